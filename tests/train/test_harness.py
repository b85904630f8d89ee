"""The shared training harness: YAML's `no` for mixed precision, batches, checkpoint keys."""

import torch

from emit_iad.train.harness import epoch_batches, make_accelerator, run_key
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
