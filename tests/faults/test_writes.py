"""Fault suite, writes (issue #17, item 5): a process killed in the middle of swapping a folder
in leaves a state the next start finishes or undoes; the target is never lost, and the
temporary folders of dead processes are removed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from emit_iad.atomic import atomic_directory, recover, recover_all
from tests.pipelines.test_ingestion_pipeline import run_pipeline


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def folder(path, text):
    path.mkdir(parents=True)
    (path / "weights.bin").write_text(text)
    return path


def killed_while_swapping(target, kill_at_rename: int) -> None:
    """A real process writes a new version of ``target`` and is SIGKILLed at its n-th rename."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from emit_iad.atomic import atomic_directory
        calls, rename = [0], Path.rename
        def dying(self, to):
            calls[0] += 1
            if calls[0] == {kill_at_rename}:
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(self, to)
        Path.rename = dying
        with atomic_directory({str(target)!r}) as tmp:
            (tmp / "weights.bin").write_text("new")
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9


@pytest.mark.parametrize(("kill_at", "expected"), [
    (1, "old"),  # still writing: the old version stays
    (2, "old"),  # complete, not swapped: the old version stays
    (3, "new"),  # the old version moved aside, the new not yet in place: the new one is put in
])  # fmt: skip
def test_a_kill_at_any_rename_leaves_a_whole_target_after_recovery(tmp_path, kill_at, expected):
    target = folder(tmp_path / "sft", "old")
    killed_while_swapping(target, kill_at)
    recover(target)
    assert (target / "weights.bin").read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]  # no leftover


def test_the_window_without_a_target_is_closed_at_the_next_write(tmp_path):
    target = folder(tmp_path / "sft", "old")
    killed_while_swapping(target, 3)
    assert not target.exists()  # the window the issue found
    with atomic_directory(target) as tmp:  # the next save recovers first
        (tmp / "weights.bin").write_text("newer")
    assert (target / "weights.bin").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]


def test_leftovers_of_live_processes_are_left_alone(tmp_path):
    target = folder(tmp_path / "sft", "current")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        writing = folder(tmp_path / f".sft.tmp-{live.pid}-abc", "half")
        gone = folder(tmp_path / f".sft.tmp-{dead_pid()}-xyz", "half")
        assert recover(target) == [f"{target}: removed {gone.name}, left by a dead process"]
        assert writing.exists() and not gone.exists()
        live.kill()


def test_a_run_starts_by_recovering_every_folder_under_data(project):
    models = project / "data/06_models"
    pid = dead_pid()
    folder(models / f".sft.new-{pid}", "new")  # sft was being swapped in when killed
    folder(models / f".sft.old-{pid}", "old")
    folder(models / f".grpo.tmp-{pid}-q1w2", "half")  # a killed save, 16 GB at real scale
    (project / "data/03_primary" / f".descriptions.parquet.tmp-{pid}-zz").write_text("half")
    run_pipeline(project, "ingestion")
    assert (models / "sft/weights.bin").read_text() == "new"
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".")) == []
    assert not list((project / "data/03_primary").glob(".*"))
    assert recover_all(project / "data") == []
