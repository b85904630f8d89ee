"""A stage without models starts without torch: kedro-mlflow builds every dataset of the catalog
and the parameters of the stage are checked at start, so neither may import the model code."""

import subprocess
import sys

import pytest

CHECK = """
import sys
import emit_iad.settings
from emit_iad.kedro_io import VLMDirectoryDataset
from emit_iad.stage_params import stage_configs
VLMDirectoryDataset("data/06_models/base")
configs = stage_configs()
configs["qa"]({"seed": 0})
configs["descriptions"]({})
print("torch" in sys.modules, "transformers" in sys.modules)
"""


def test_the_catalog_and_the_qa_parameters_load_without_torch():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout + out.stderr


def test_a_training_stage_still_checks_its_parameters():
    from emit_iad.params import ParamError
    from emit_iad.stage_params import stage_configs

    with pytest.raises(ParamError, match=r"lr: .abc. is not a number .*parameters_sft"):
        stage_configs()["sft"]({"lr": "abc", "checkpoint_dir": "x"})
