"""Who answers the questions: a local VLM (batched, greedy), or an OpenAI-compatible endpoint.

Both take a list of question records and return the raw reply texts, in order.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from emit_iad.evaluate.config import EvaluationConfig, evaluation_config
from emit_iad.llm_api import ChatClient, ClientConfig, Job
from emit_iad.llm_api.images import image_part
from emit_iad.params import nearest
from emit_iad.vlm.answering import LocalAnswerer
from emit_iad.vlm.bundle import META_FILE, VLM, ModelLoadError, check_complete
from emit_iad.vlm.chat import PromptConfig, build_messages
from emit_iad.vlm.loading import load_pretrained, load_vlm

log = logging.getLogger(__name__)
STAGES = ("base", "sft", "grpo")


@dataclass(frozen=True)
class ModelSpec:
    """One entry of ``evaluation.models``: a stage output, a path or hub name, an MLflow model
    URI (``models:/name@alias``) or ``openai:<model>``."""

    label: str
    kind: str  # stage | path | mlflow | openai
    ref: str

    @classmethod
    def parse(cls, text: str, models_dir: str = "data/06_models") -> ModelSpec:
        """The label names the model's answer files, so it is one plain file name whatever
        the entry holds (``openai:../../x`` must not write outside the answers folder).

        >>> ModelSpec.parse("openai:../../etc/passwd").label
        'openai-etc-passwd'
        """
        text = str(text).strip()
        if text in STAGES:
            return cls(text, "stage", str(Path(models_dir) / text))
        if text.startswith("openai:"):
            return cls(_file_name(text.replace(":", "-")), "openai", text.split(":", 1)[1])
        if text.startswith(("models:/", "runs:/")):
            label = text.split("/", 1)[1].replace("/", "-").replace("@", "-")
            return cls(_file_name(label), "mlflow", text)
        return cls(_file_name(Path(text).name or text), "path", text)


def _file_name(label: str) -> str:
    """Letters, digits, ``.``, ``_`` and ``-`` only, no leading dot: a file name, never a path."""
    clean = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", label))
    clean = re.sub(r"(^|-)\.+(?=-|$)", r"\1", clean)  # no `..` parts
    return re.sub(r"-{2,}", "-", clean).strip(".-") or "model"


def openai_messages(record, prompt: PromptConfig, knowledge: str | None, max_side: int) -> list:
    """MMAD's protocol as OpenAI chat messages, images as data URLs."""
    messages, paths = build_messages(record, prompt, knowledge)
    images = iter(paths)
    content = [
        image_part(next(images), max_side) if part["type"] == "image" else
        {"type": "text", "text": part["text"]}
        for part in messages[1]["content"]
    ]  # fmt: skip
    return [messages[0], {"role": "user", "content": content}]


class AnswerFailed(RuntimeError):
    pass


class OpenAIAnswerer:
    """Any OpenAI-compatible endpoint through the shared client (cache, retries, budget)."""

    def __init__(self, client: ChatClient, prompt: PromptConfig, batch_size: int = 16,
                 knowledge: dict | None = None, image_max_side: int = 512):  # fmt: skip
        self.client, self.prompt, self.batch_size = client, prompt, batch_size
        self.knowledge, self.max_side = knowledge, image_max_side

    def answer(self, records: Sequence) -> list[str]:
        knowledge = self.knowledge or {}
        jobs = [
            Job(
                openai_messages(
                    r, self.prompt, knowledge.get((r["dataset"], r["object"])), self.max_side
                ),
                partial(str),
                # a refusal, an empty reply or one without a letter is the model's answer
                # (scored wrong, counted in `unparsed`); only transport failures fail
                refusal_is_reply=True,
            )
            for r in records
        ]
        out = []
        for r, res in zip(records, self.client.map(jobs), strict=True):
            if not hasattr(res, "value"):  # a failed request is not an (empty) answer
                raise AnswerFailed(
                    f"question {r.get('id', r.get('question', '?'))!r}: the endpoint failed after "
                    f"its retries ({getattr(res, 'reason', res)}). The answers so far are kept "
                    "in evaluation.work_dir; run the evaluation again to resume from there."
                )
            out.append(res.value)
        return out


def _did_you_mean(word: str, choices) -> str:
    close = nearest(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def _check_mlflow_uri(uri: str) -> None:
    """A ``models:/name@alias`` or ``models:/name/version`` URI names a registered model and an
    alias or version that exist; else the error lists what does (nearest name first)."""
    import mlflow

    if not uri.startswith("models:/"):
        return  # runs:/ URIs are checked by the download itself
    rest = uri[len("models:/") :]
    name, alias, version = rest, None, None
    if "@" in rest:
        name, alias = rest.split("@", 1)
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
    client = mlflow.MlflowClient()
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        names = [m.name for m in client.search_registered_models()]
        raise ModelLoadError(
            f"evaluation.models: {uri}: no registered model {name!r}{_did_you_mean(name, names)} "
            f"(registered: {sorted(names) or 'none'})"
        ) from None
    aliases = dict(model.aliases or {})
    if alias is not None and alias not in aliases:
        raise ModelLoadError(
            f"evaluation.models: {uri}: {name} has no alias {alias!r}"
            f"{_did_you_mean(alias, aliases)} (aliases: {sorted(aliases) or 'none'})"
        )
    if version is not None and version != "latest":
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{name}'")]
        if version not in versions:
            raise ModelLoadError(f"evaluation.models: {uri}: {name} has no version {version} "
                                 f"(versions: {sorted(versions, key=int)})")  # fmt: skip


def check_spec(spec: ModelSpec) -> None:
    """What can be known of a spec without loading its weights: a bad entry later in
    ``evaluation.models`` fails before the first question is asked."""
    if spec.kind == "openai":
        return
    if spec.kind == "mlflow":
        _check_mlflow_uri(spec.ref)
        return
    folder = Path(spec.ref)
    if (folder / META_FILE).is_file():
        check_complete(folder, json.loads((folder / META_FILE).read_text()))
        return
    if spec.kind == "stage":
        raise ModelLoadError(f"{folder}: no model; run `kedro run --pipelines={spec.label}` first")
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"evaluation.models: {folder} is a folder but neither an emit-iad model "
                f"({META_FILE}) nor a transformers one (config.json)"
            )
        return
    # not a folder: only ``owner/name`` can be a hub model (a typo of a stage is not one)
    if spec.ref.count("/") != 1 or spec.ref.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"evaluation.models: {spec.ref!r} is no stage {STAGES}, no folder and no hub name "
            f"(owner/name){_did_you_mean(spec.ref, STAGES)}"
        )


def load_model(spec: ModelSpec, dtype: str = "auto", device: str = "cpu") -> VLM:
    """A local model for a spec (stage folder, path, hub name or MLflow URI)."""
    if spec.kind == "mlflow":
        import mlflow

        folder = Path(tempfile.mkdtemp(prefix="emit-iad-model-"))
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=spec.ref, dst_path=str(folder))
        )
        found = sorted(local.rglob("emit_iad.json"))
        if not found:
            raise ModelLoadError(f"{spec.ref}: no emit-iad model directory in its artifacts")
        return load_vlm(found[0].parent, dtype=dtype, device=device)
    folder = Path(spec.ref)
    if (folder / "emit_iad.json").is_file():
        return load_vlm(folder, dtype=dtype, device=device)
    if spec.kind == "stage":
        raise ModelLoadError(f"{folder}: no model; run `kedro run --pipelines={spec.label}` first")
    return load_pretrained(spec.ref, dtype=dtype, device=device)


def make_answerer(spec: ModelSpec, settings: dict | EvaluationConfig, prompt: PromptConfig,
                  credentials: dict, knowledge: dict | None = None):  # fmt: skip
    config = evaluation_config(settings)
    if spec.kind == "openai":
        llm = {"max_tokens": config.max_new_tokens, "temperature": 0.0,
               **(config.llm or {}), "model": spec.ref, "json_mode": False}  # fmt: skip
        client = ChatClient(ClientConfig.from_params(llm), api_key=credentials.get("api_key"),
                            organization=credentials.get("organization"),
                            base_url=credentials.get("base_url"))  # fmt: skip
        return OpenAIAnswerer(client, prompt, config.batch_size, knowledge)
    vlm = load_model(spec, config.dtype, config.device)
    return LocalAnswerer(vlm, prompt, config.batch_size, config.max_new_tokens, knowledge)
