"""The processes of one launch, as the GRPO loop needs them: who am I, and everyone's objects.

Difficulty-aware GRPO decides on the global batch (EMIT's trainer gathers its dynamic
sampling over all GPUs): each process samples its share of a round's prompts, the results are
gathered, and every process then takes the same decisions from the same data. A gather that
does not return within the process group's timeout stops the run with the rank and the step
named instead of waiting for ever.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class CollectiveTimeout(RuntimeError):
    pass


def process_rank() -> int:
    """This process's global rank under a launcher (accelerate, torchrun, DeepSpeed set
    ``RANK``); 0 when run alone."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return process_rank() == 0


def die_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Make this child process end within seconds of its parent's death (a worker pool's
    initializer): a worker left alive by a killed parent would go on training into the folders
    a rerun then uses. Linux's parent-death signal kills it at once; on every system a daemon
    thread also ends it once it has been handed to another parent (``os.getppid()`` changes).
    """
    try:  # PR_SET_PDEATHSIG (1): SIGKILL when the parent goes
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def in_workers(fn: Callable, calls: list[tuple], workers: int) -> Iterator:
    """``fn(*call)`` for every call in ``workers`` spawned processes (no forked torch or MLflow
    state), the results as they finish. The workers end with this process
    (:func:`die_with_parent`); a Ctrl-C here or a failed call stops the others at once, not
    after their calls (minutes each)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:  # fmt: skip
        futures = [pool.submit(fn, *call) for call in calls]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            # (shutdown forgets the processes: take them first; the pool has no public handle)
            processes = list((pool._processes or {}).values())
            for process in processes:
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@dataclass
class World:
    rank: int = 0
    size: int = 1
    where: Callable[[], str] = field(default=lambda: "")  # e.g. "step 3", for errors
    timeout_s: float | None = None

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (on every process)."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        try:
            dist.all_gather_object(out, obj)
        except RuntimeError as exc:  # gloo/NCCL raise once the process group's timeout passes
            raise CollectiveTimeout(
                f"rank {self.rank} of {self.size}, {self.where() or 'GRPO'}: the other processes "
                f"did not meet within {self.timeout_s or 'the process group'}s "
                f"(grpo.collective_timeout_s): one of them failed or hangs ({exc})"
            ) from exc
        return out

    def share(self, items: list) -> list:
        """This process's share of a global list (round-robin: the sizes differ by ≤ 1)."""
        return items[self.rank :: self.size]

    def merge(self, parts: list[list], n: int) -> list:
        """Inverse of :meth:`share` over everyone's parts: the global list of ``n`` items."""
        return [parts[i % self.size][i // self.size] for i in range(n)]
