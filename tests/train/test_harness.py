"""The shared training harness: YAML's `no` for mixed precision, batches, checkpoint keys."""

import logging

import torch

from emit_iad.train.checkpoints import Checkpointer, run_key
from emit_iad.train.harness import Position, epoch_batches, make_accelerator
from emit_iad.train.sft import SFTConfig


def test_unquoted_no_in_yaml_means_no_mixed_precision():
    # `mixed_precision: no` reads as False (YAML 1.1), as `dvc exp run -S` writes it back
    assert make_accelerator(mixed_precision=False).mixed_precision == "no"
    assert make_accelerator(mixed_precision="no").mixed_precision == "no"


def test_epoch_batches_shard_one_order_over_processes():
    whole = epoch_batches(10, 2, seed=0, epoch=0, rank=0, world=1)
    r0 = epoch_batches(10, 1, seed=0, epoch=0, rank=0, world=2)
    r1 = epoch_batches(10, 1, seed=0, epoch=0, rank=1, world=2)
    assert [a + b for a, b in zip(r0, r1, strict=True)] == whole
    assert epoch_batches(10, 2, seed=0, epoch=1) != whole  # a new order every epoch


def test_run_key_changes_with_settings_shapes_and_data():
    module = torch.nn.Linear(3, 2)
    key = run_key(SFTConfig(), module, 100)
    assert key == run_key(SFTConfig(), torch.nn.Linear(3, 2), 100)  # values do not matter
    assert key != run_key(SFTConfig(lr=1e-4), module, 100)
    assert key != run_key(SFTConfig(), torch.nn.Linear(4, 2), 100)
    assert key != run_key(SFTConfig(), module, 99)


def _checkpointed(tmp_path):
    acc = make_accelerator()
    module = acc.prepare(torch.nn.Linear(3, 2))
    ckpt = Checkpointer(acc, tmp_path / "ck", every=1, key="k")
    ckpt.save(Position(step=1), [{"step": 1}])
    return acc, module


def test_a_resume_without_its_random_state_says_what_differs(tmp_path, caplog):
    """Issue #27: accelerate resumed without the RNG state at INFO level only."""
    acc, _ = _checkpointed(tmp_path)
    (tmp_path / "ck/checkpoint-1/random_states_0.pkl").write_bytes(b"cut")
    with caplog.at_level(logging.WARNING):
        pos = Checkpointer(acc, tmp_path / "ck", every=1, key="k").restore_latest()
    assert pos == Position(step=1)
    assert "random_states_0.pkl cannot be read" in caplog.text
    assert "batches and rollouts differ" in caplog.text


def test_an_intact_resume_warns_of_nothing(tmp_path, caplog):
    acc, _ = _checkpointed(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(acc, tmp_path / "ck", every=1, key="k").restore_latest().step == 1
    assert "cannot be read" not in caplog.text
