"""Fault suite, outputs as one commit (issue #27, item 1): a run that fails leaves every output
of its pipeline byte-identical to what it was before it, also those that earlier nodes of the
same run had already rewritten; a run killed mid-way is put back at the next start."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from emit_iad.atomic import OutputsBackup, atomic_directory, recover_all
from tests.faults.test_writes import dead_pid
from tests.pipelines.test_ingestion_pipeline import run_pipeline


def digests(root: Path, *names: str) -> dict[str, str]:
    """{relative path: sha256} of every file under each named file or folder."""
    out = {}
    for name in names:
        top = root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_a_backup_survives_writes_in_place_swaps_and_new_outputs(tmp_path):
    table, model, fresh = tmp_path / "table.csv", tmp_path / "model", tmp_path / "new.png"
    table.write_text("a,b\n1,2\n")
    with atomic_directory(model) as tmp:
        (tmp / "weights.bin").write_bytes(b"old weights")
    before = digests(tmp_path, "table.csv", "model")
    backup = OutputsBackup([table, model, fresh])
    backup.take()
    with table.open("w") as fh:  # as pandas' CSVDataset writes: truncates the same inode
        fh.write("half")
    with atomic_directory(model) as tmp:  # a model is replaced whole
        (tmp / "weights.bin").write_bytes(b"new weights")
    fresh.write_bytes(b"png")
    assert sorted(backup.restore()) == sorted(
        [str(table), str(model), f"{fresh} (removed: it did not exist before)"])
    assert digests(tmp_path, "table.csv", "model") == before and not fresh.exists()
    assert not list(tmp_path.glob(".*.bak-*"))


def test_a_run_that_died_gets_its_outputs_back_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    (data / "08_reporting").mkdir(parents=True)
    metrics = data / "08_reporting/metrics.json"
    metrics.write_text('{"half": ')  # what the killed run left
    (data / f"08_reporting/.metrics.json.bak-{dead_pid()}").write_text('{"average": 36.2}')
    live = data / f"08_reporting/.curves.png.bak-{os.getpid()}"  # a live run's: left alone
    live.write_text("live")
    done = recover_all(data)
    assert len(done) == 1 and "restored the version before a run that died" in done[0]
    assert metrics.read_text() == '{"average": 36.2}' and live.exists()


@pytest.mark.slow
def test_a_later_node_failing_leaves_the_earlier_nodes_outputs_as_they_were(project):
    """Ingestion writes the synthetic dataset and its manifest, then indexes the sources. A
    changed dataset plus a second source with a corrupt image: the first node rewrites its
    outputs, the second fails; every output is then as before the run (the manifest once went
    from 1,170 rows to 0)."""
    run_pipeline(project, "ingestion")
    outputs = ("data/01_raw/synthetic", "data/01_raw/synthetic_manifest.csv",
               "data/02_intermediate/image_index.parquet", "data/08_reporting")  # fmt: skip
    before = digests(project, *outputs)
    broken = project / "broken/bottle/train/good"
    broken.mkdir(parents=True)
    (broken / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    path = project / "conf/base/parameters_ingestion.yml"
    params = yaml.safe_load(path.read_text())
    params["ingestion"]["synthetic"]["n_train_good"] += 1
    params["ingestion"]["sources"].append(
        {"name": "broken", "layout": "mvtec_ad", "root": str(project / "broken")})
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match=r"000\.png"):
        run_pipeline(project, "ingestion")
    assert digests(project, *outputs) == before
    assert not [p for p in (project / "data").rglob(".*") if ".bak-" in p.name]


@pytest.mark.slow
def test_a_full_disk_at_a_later_save_leaves_every_output_as_it_was(project, monkeypatch):
    """Issue #27 item 8: the disk fills while the index is saved (ENOSPC from the writer):
    the run fails with the system's message and every output of the pipeline is as before."""
    import errno

    import pandas as pd

    run_pipeline(project, "ingestion")
    outputs = ("data/01_raw/synthetic_manifest.csv", "data/02_intermediate/image_index.parquet",
               "data/08_reporting")  # fmt: skip
    before = digests(project, *outputs)

    def full(self, path, *args, **kwargs):
        path.write(b"PAR1")  # (the dataset's open file) half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(Exception, match="No space left on device"):
        run_pipeline(project, "ingestion")
    assert digests(project, *outputs) == before
