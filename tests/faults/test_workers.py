"""Fault suite, processes (issue #27, item 3): workers end with their parent, and one training
folder has one trainer: a second is refused with the first one's PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emit_iad.atomic import FolderInUse, claim, release


def running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap an orphan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


PARENT = """
import os, sys, time
from emit_iad.train.world import in_workers

def busy(i):
    open(os.path.join({folder!r}, f"worker-{{os.getpid()}}"), "w").close()
    time.sleep(120)

if __name__ == "__main__":
    try:
        list(in_workers(busy, [(0,), (1,)], 2))
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _busy_parent(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    """A process running the ablation's pool (``in_workers``) with two busy workers."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(folder=str(tmp_path)))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    assert len(workers) == 2 and all(running(w) for w in workers)
    return parent, workers


def _gone_within(workers: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [w for w in workers if running(w)]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_pool_workers_end_within_seconds_of_their_parents_sigkill(tmp_path):
    """Issue #27: after a SIGKILL of the ablation, its workers went on training for more than
    60 s. Now both are gone within 5 s."""
    parent, workers = _busy_parent(tmp_path)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _gone_within(workers, 5) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_ctrl_c_of_the_parent_alone_stops_its_workers_at_once(tmp_path):
    """SIGINT to the parent only (not its process group, as a terminal would): it does not wait
    for its workers' calls (two minutes each) but stops them and exits."""
    parent, workers = _busy_parent(tmp_path)
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=20) == 130
    assert _gone_within(workers, 5) == []


def test_a_second_trainer_on_one_folder_is_refused_with_the_pid(tmp_path):
    folder = tmp_path / ".grpo_checkpoints"
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from emit_iad.atomic import claim
        claim({str(folder)!r})
        print("claimed", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "claimed"
        with pytest.raises(FolderInUse, match=f"process {other.pid} on this host.*kill {other.pid}"):
            claim(folder)
    finally:
        other.kill()
        other.wait()
    claim(folder)  # its owner is dead: taken over
    owner = folder.with_name(f".{folder.name}.owner")
    assert owner.read_text().split()[0] == str(os.getpid())
    release(folder)
    assert not owner.exists()
