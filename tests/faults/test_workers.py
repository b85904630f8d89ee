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


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_pool_workers_end_within_seconds_of_their_parents_sigkill(tmp_path):
    """The ablation's pool (spawned workers, die_with_parent as initializer): its parent is
    SIGKILLed while both workers are busy; both are gone within 5 s (they went on training for
    more than 60 s before)."""
    code = textwrap.dedent(f"""
        import multiprocessing, os, time
        from concurrent.futures import ProcessPoolExecutor
        from emit_iad.train.world import die_with_parent

        def busy(i):
            open(os.path.join({str(tmp_path)!r}, f"worker-{{os.getpid()}}"), "w").close()
            time.sleep(120)

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(2, mp_context=ctx, initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                list(pool.map(busy, range(2)))
    """)
    script = tmp_path / "parent.py"
    script.write_text(code)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    assert len(workers) == 2 and all(running(w) for w in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while any(running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if running(w)]


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
