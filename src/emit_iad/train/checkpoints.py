"""Checkpoints of a training run: accelerate's state with the position and the history, the
last few kept, a changed run's set aside, and one trainer per folder."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator

from emit_iad.atomic import claim, release
from emit_iad.train.harness import Position

log = logging.getLogger(__name__)


def run_key(config, module: torch.nn.Module, n_items: int) -> str:
    """What a checkpoint must match to be resumed: the stage's settings, the shapes of the
    module's tensors and the amount of training data."""
    shapes = [(name, tuple(t.shape)) for name, t in module.state_dict().items()]
    text = json.dumps([asdict(config), shapes, n_items], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpointer:
    """``<folder>/checkpoint-<step>/``: accelerate state (model, optimizer, scheduler, RNG) +
    ``position.json``; the last ``keep`` are kept. Checkpoints written under another ``key``
    (other settings, another model) are set aside, not resumed."""

    def __init__(self, accelerator: Accelerator, folder: str | Path, every: int, keep: int = 2,
                 key: str = ""):  # fmt: skip
        self.acc, self.folder, self.every, self.keep = accelerator, Path(folder), every, keep
        self.key = key
        self.history: list[dict] = []  # the rows logged before the restored checkpoint
        if self.acc.is_main_process:  # one trainer per folder: a second one is refused
            claim(self.folder)

    def due(self, pos: Position) -> bool:
        return self.every > 0 and pos.step > 0 and pos.step % self.every == 0

    def save(self, pos: Position, history: list[dict] | None = None) -> Path:
        """``history``: the rows so far, so that a resumed run's curves start at step 1."""
        path = self.folder / f"checkpoint-{pos.step}"
        tmp = self.folder / f".checkpoint-{pos.step}.tmp"
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        if self.acc.is_main_process:
            (tmp / "history.json").write_text(json.dumps(history or [], default=float))
            (tmp / "position.json").write_text(json.dumps({**asdict(pos), "key": self.key}))
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)  # a checkpoint exists whole or not at all
            for old in self.all()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return path

    def all(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def restore_latest(self) -> Position | None:
        found = [p for p in self.all() if (p / "position.json").is_file()]
        if not found:
            return None
        latest = found[-1]
        saved = json.loads((latest / "position.json").read_text())
        if saved.pop("key", "") != self.key:
            log.warning(
                "%s was written by a run with other settings or another model; starting afresh "
                "(the old checkpoints are removed)", latest)  # fmt: skip
            self.acc.wait_for_everyone()
            self.clear(finished=False)
            return None
        self._check_random_state(latest)
        self.acc.load_state(str(latest))
        pos = Position(**saved)
        rows = latest / "history.json"
        self.history = json.loads(rows.read_text()) if rows.is_file() else []
        log.info("Resuming from %s (step %d, epoch %d)", latest, pos.step, pos.epoch)
        return pos

    def _check_random_state(self, checkpoint: Path) -> None:
        """accelerate goes on without a word when a checkpoint's random state cannot be read
        (it logs at INFO): the resumed run then draws other batches and rollouts than an
        uninterrupted one would. Say so, with the file."""
        path = checkpoint / f"random_states_{self.acc.process_index}.pkl"
        try:
            torch.load(path, weights_only=False)
        except Exception as exc:
            log.warning(
                "%s cannot be read (%s: %s): resuming from %s with a fresh random state, so "
                "from here on batches and rollouts differ from those of an uninterrupted run "
                "(the weights, optimizer and schedule are restored)",
                path, type(exc).__name__, exc, checkpoint.name)  # fmt: skip

    def clear(self, finished: bool = True) -> None:
        """Remove the checkpoints; ``finished``: the run is done, and gives up the folder."""
        if self.acc.is_main_process:
            shutil.rmtree(self.folder, ignore_errors=True)
            if finished:
                release(self.folder)
