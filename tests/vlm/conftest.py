import pytest

from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
from emit_iad.vlm.tiny import TinyModelConfig, build_tiny_model

TEXTS = [
    "Is there any defect in the object? Yes. No. There is a defect in the object.",
    "What is the type of the defect? Scratch. Crack. Hole. Where is the defect? Top left.",
    "<think>The query differs from the template at the top left.</think><answer>A</answer>",
] * 20


@pytest.fixture(scope="module")
def tiny_vlm():
    config = TinyModelConfig(vocab_size=600)
    model, processor = build_tiny_model(TEXTS, config)
    return VLM(model, processor, FewShotModule(config.hidden_size, FewShotConfig(layers=(0, 1, 2))),
               {"stage": "base", "base_model": None})  # fmt: skip


@pytest.fixture(scope="module")
def records(sets):
    _, _, qa = sets
    test = qa.split("test")
    types = ["Anomaly Detection", "Defect Classification", "Defect Localization", "Object Details"]
    return [r for _, r in test[test.type.isin(types)].head(8).iterrows()]
