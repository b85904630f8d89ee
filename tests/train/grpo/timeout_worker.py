"""Two processes under torchrun; rank 1 never meets rank 0's gather (it hangs past the
timeout): rank 0 must stop with the rank and the step named, not wait for ever."""

import sys
import time
from datetime import timedelta

import torch.distributed as dist

from emit_iad.train.world import CollectiveTimeout, World


def main() -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=3))
    rank = dist.get_rank()
    world = World(rank, 2, lambda: "step 7", 3)
    if rank == 1:
        time.sleep(12)  # a process that hangs
        sys.exit(0)
    start = time.monotonic()
    try:
        world.gather({"rank": rank})
    except CollectiveTimeout as exc:
        print(f"STOPPED after {time.monotonic() - start:.0f}s: {exc}", flush=True)
        sys.exit(3)
    sys.exit(0)


if __name__ == "__main__":
    main()
