"""Write whole files and folders or nothing: into a temporary sibling, then rename.

:class:`OutputsBackup` makes the outputs of a whole run one commit: each output's previous
version is kept beside it (``.NAME.bak-PID``) until the run succeeds, and put back when it
fails (or, when the process died, at the next start).

A folder is swapped in three renames, each named after the writing process
(``.NAME.tmp-PID-*`` while written, ``.NAME.new-PID`` once complete, ``.NAME.old-PID`` for the
previous version), so that a process killed at any point leaves a state :func:`recover` can
finish or undo at the next start: the target is never lost, and the leftovers of dead
processes (a whole model each, at real scale) are removed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|new|old|bak)-(?P<pid>\d+)(?:-.*)?$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(target: str | Path) -> list[str]:
    """Finish or undo the swap of ``target`` that a dead process left half done, and remove
    that process's leftovers; returns what was done (live writers are left alone).

    A missing target gets the dead writer's complete new version (``.new-PID``) if there is
    one, else the previous version back (``.old-PID``).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    dead: dict[str, list[Path]] = {"tmp": [], "new": [], "old": [], "bak": []}
    for path in target.parent.iterdir():
        m = _LEFTOVER.match(path.name)
        if m and m["name"] == target.name and not pid_alive(int(m["pid"])):
            dead[m["kind"]].append(path)
    done = []
    if dead["bak"]:  # a run died before its outputs were committed: its previous version back
        chosen = max(dead["bak"], key=lambda p: p.stat().st_mtime)
        if target.exists() or target.is_symlink():
            _remove(target)
        chosen.rename(target)
        dead["bak"].remove(chosen)
        done.append(f"{target}: restored the version before a run that died ({chosen.name})")
    if not target.exists():
        for kind in ("new", "old"):
            if dead[kind]:
                chosen = max(dead[kind], key=lambda p: p.stat().st_mtime)
                chosen.rename(target)
                dead[kind].remove(chosen)
                done.append(f"{target}: restored from {chosen.name}")
                break
    for path in (p for paths in dead.values() for p in paths):
        _remove(path)
        done.append(f"{target}: removed {path.name}, left by a dead process")
    for line in done:
        log.warning(line)
    return done


def recover_all(root: str | Path, depth: int = 3) -> list[str]:
    """:func:`recover` every target under ``root`` (``depth`` levels) with leftovers."""
    root, done = Path(root), []
    if not root.is_dir():
        return done
    level = [root]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            targets = {m["name"] for p in entries if (m := _LEFTOVER.match(p.name))}
            for name in sorted(targets):
                done += recover(folder / name)
            below += [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        level = below
    return done


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``target`` when the block succeeds.

    On any error (or interruption) the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{pid}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; these are ordinary project files
    try:
        yield tmp
        new = tmp.rename(target.with_name(f".{target.name}.new-{pid}"))  # complete
        old = None
        if target.exists():
            old = target.rename(target.with_name(f".{target.name}.old-{pid}"))
        new.rename(target)
        if old is not None:
            _remove(old)
    except BaseException:
        for path in (tmp, target.with_name(f".{target.name}.new-{pid}")):
            _remove(path)
        old = target.with_name(f".{target.name}.old-{pid}")
        if old.exists() and not target.exists():
            old.rename(target)
        raise


@contextmanager
def atomic_file(target: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary sibling of ``target`` for writing; it replaces ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)  # leftovers: recover_all at the next run
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


class OutputsBackup:
    """The previous version of each of a run's outputs, put back if the run fails.

    A file is copied (a writer may truncate it in place). A folder is hard-linked file by file:
    this project's folders are only ever replaced whole (``atomic_directory``) or removed and
    rewritten, never written into, so the links keep the old bytes at no cost in space, even
    for a model of 16 GB. Outputs that did not exist before the run are removed on failure.
    """

    def __init__(self, targets: Iterable[str | Path]):
        self.targets = sorted({Path(t) for t in targets})
        self.pid = os.getpid()
        self.absent: set[Path] = set()

    def backup_of(self, target: Path) -> Path:
        return target.with_name(f".{target.name}.bak-{self.pid}")

    def take(self) -> None:
        for target in self.targets:
            bak = self.backup_of(target)
            _remove(bak)
            if target.is_dir():
                shutil.copytree(target, bak, symlinks=True, copy_function=_link_or_copy)
            elif target.exists():
                shutil.copy2(target, bak)
            else:
                self.absent.add(target)

    def restore(self) -> list[str]:
        """Every output as it was before :meth:`take`; returns what was put back."""
        done = []
        for target in self.targets:
            bak = self.backup_of(target)
            if bak.exists():
                _remove(target)
                bak.rename(target)
                done.append(str(target))
            elif target in self.absent and (target.exists() or target.is_symlink()):
                _remove(target)
                done.append(f"{target} (removed: it did not exist before)")
        return done

    def discard(self) -> None:
        for target in self.targets:
            _remove(self.backup_of(target))


class FolderInUse(RuntimeError):
    """Another live process on this host is writing the folder."""


def claim(folder: str | Path) -> Path:
    """Make this process the one writer of ``folder`` (a training run's checkpoints): a file
    ``.NAME.owner`` beside it holds the writer's PID and host. Raises :class:`FolderInUse`
    naming the PID while another live process of this host holds it (two trainers on one
    folder, or a worker a killed parent left behind); a dead or foreign-host owner's claim is
    taken over. Returns the claim file (remove it with :func:`release`)."""
    import socket

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    owner = folder.with_name(f".{folder.name}.owner")
    host = socket.gethostname()
    try:
        pid, their_host = owner.read_text().split()[:2]
    except (FileNotFoundError, ValueError):
        pid, their_host = "", ""
    if pid.isdigit() and their_host == host and int(pid) != os.getpid() and pid_alive(int(pid)):
        raise FolderInUse(
            f"{folder} is being written by process {pid} on this host (another run of this "
            f"stage, or a worker left running): wait for it, or stop it (kill {pid}), then run "
            "again"
        )
    with atomic_file(owner) as fh:
        fh.write(f"{os.getpid()} {host}\n")
    return owner


def release(folder: str | Path) -> None:
    """Give up this process's :func:`claim` on ``folder`` (another's is left alone)."""
    owner = Path(folder).with_name(f".{Path(folder).name}.owner")
    try:
        if owner.read_text().split()[0] == str(os.getpid()):
            owner.unlink()
    except (FileNotFoundError, IndexError):
        pass
