"""DeepSpeed launches on this CPU machine: two processes over gloo, started by `accelerate launch`
with a DeepSpeed config (ZeRO-1, 2, 3) and, for comparison, plain DDP. SFT in micro-batches with
accumulation, then GRPO, then the saved model loaded back. DeepSpeed's CPU accelerator comes
from PyPI (`DS_BUILD_OPS=0`, no compiled ops; scripts/setup.sh installs it with the tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
deepspeed = pytest.importorskip("deepspeed")
WORKER = Path(__file__).with_name("ds_worker.py")

from emit_iad.vlm.bundle import VLM  # noqa: E402
from emit_iad.vlm.loading import load_vlm  # noqa: E402


def launch_config(folder: Path, stage: int | None) -> Path:
    """An accelerate config file: DeepSpeed ZeRO-``stage`` (None: plain multi-process DDP)."""
    lines = ["compute_environment: LOCAL_MACHINE", "num_machines: 1", "num_processes: 2",
             "machine_rank: 0", "mixed_precision: 'no'",
             "main_process_port: " + str(29560 + (stage if stage is not None else 9))]  # fmt: skip
    if stage is None:  # README's launcher: torchrun's processes, the harness picks MULTI_CPU
        lines += ["distributed_type: MULTI_GPU", "use_cpu: false"]
    else:
        lines += ["distributed_type: DEEPSPEED", "use_cpu: true", "deepspeed_config:",
                  f"  zero_stage: {stage}", "  offload_optimizer_device: none",
                  "  offload_param_device: none", "  zero3_init_flag: false"]  # fmt: skip
    path = folder / f"accelerate-{stage}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ready(tiny_vlm, sets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ds")
    _, _, qa = sets
    train = qa.split("train")
    train[train.type == "Anomaly Detection"].head(8).to_parquet(folder / "train.parquet")
    tiny_vlm.save(folder / "base")
    return folder


def launch(folder: Path, stage: int | None) -> dict:
    tag = f"zero{stage}" if stage is not None else "ddp"
    bin_ = Path(sys.executable).parent
    cmd = [str(bin_ / "accelerate"), "launch", "--config_file", str(launch_config(folder, stage)),
           str(WORKER), str(folder), tag]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads((folder / f"result-{tag}.json").read_text())
    result["sft_saved_sum"] = checksum(load_vlm(folder / f"sft-{tag}"))
    result["base_sum"] = checksum(load_vlm(folder / "base"))
    return result


def checksum(vlm: VLM) -> float:
    return float(sum(p.detach().double().sum() for p in vlm.model.parameters()))


@pytest.fixture(scope="module")
def ddp(ready):
    return launch(ready, None)


@pytest.mark.parametrize("stage", [1, 2, 3], ids=["zero1", "zero2", "zero3"])
def test_deepspeed_launch_trains_as_ddp_does(ready, ddp, stage):
    """Micro-batches of 2, accumulation 2: one optimizer step per batch under every engine (not
    one per micro-batch), the ranks identical, and the saved model the whole trained one, the
    same as DDP's to float tolerance."""
    result = launch(ready, stage)
    assert result["processes"] == ddp["processes"] == 2
    assert result["engine"] == "DEEPSPEED" and ddp["engine"] == "MULTI_CPU"
    assert len(result["sft_lr"]) == len(ddp["sft_lr"]) >= 2
    assert max(result["sft_spread"]) == 0.0 and max(ddp["sft_spread"]) == 0.0
    assert result["sft_saved_sum"] != result["base_sum"]  # trained parameters were saved
    assert result["sft_saved_sum"] == pytest.approx(ddp["sft_saved_sum"], rel=1e-5)
    assert result["grpo_steps"] == ddp["grpo_steps"] == 2
    assert max(result["grpo_spread"]) == 0.0 and result["grpo_update"]
