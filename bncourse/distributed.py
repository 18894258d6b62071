"""Data-parallel training on one CPU: process groups of gloo workers, and chapter 7's measurements.

* :func:`launch` — run a function on ``world_size`` spawned processes joined in a gloo (or NCCL)
  process group over ``127.0.0.1``, with a deadline, and return every rank's result.
* :func:`collective_latency` — time ``all_reduce`` / ``all_gather`` of BN-sized tensors.
* :func:`compare_training` — the same small training as one process with the global batch, and as
  ``world_size`` workers with local BN or with :class:`~bncourse.torch.SyncBatchNorm`.

Everything here runs on CPU with the gloo backend; a learner's laptop suffices.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["free_port", "launch", "collective_latency", "compare_training", "split_sizes"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable, world_size: int, port: int, backend: str, args: tuple,
            out_dir: str, collective_timeout: float) -> None:
    torch.set_num_threads(1)                  # one core per worker: the workers share the machine
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=collective_timeout))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), *,
           backend: str = "gloo", timeout: float = 120.0,
           collective_timeout: float = 30.0) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` processes in one process group.

    ``fn`` must be importable (a module-level function: the processes are *spawned*); what it returns
    must be picklable by ``torch.save``. The group is initialized over ``tcp://127.0.0.1`` on a free
    port with ``backend`` (``"gloo"`` on CPU). Returns the results ordered by rank.

    Raises:
        TimeoutError: the processes did not all finish within ``timeout`` seconds (they are killed).
        A collective that waits for a dead or stuck rank fails after ``collective_timeout`` seconds.
        torch.multiprocessing.ProcessRaisedException: a rank raised (its traceback is in the message).
    """
    out_dir = tempfile.mkdtemp(prefix="bncourse-dist-")
    try:
        ctx = mp.spawn(_worker, nprocs=world_size, join=False,
                       args=(fn, world_size, free_port(), backend, tuple(args), out_dir,
                             collective_timeout))
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{world_size} workers did not finish within {timeout} s")
        finally:
            for p in ctx.processes:           # after an error or a timeout: leave nothing behind
                if p.is_alive():
                    p.kill()
                p.join()
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False)
                for r in range(world_size)]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def split_sizes(total: int, world_size: int) -> list[int]:
    """``total`` samples dealt to ``world_size`` ranks as evenly as possible, larger shares first."""
    base, extra = divmod(total, world_size)
    return [base + (r < extra) for r in range(world_size)]
