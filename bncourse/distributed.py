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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bncourse import seeding

__all__ = ["free_port", "launch", "collective_latency", "compare_training", "Comparison"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable, world_size: int, port: int, backend: str, args: tuple,
            out_dir: str, collective_timeout: float) -> None:
    torch.set_num_threads(1)                  # one core per worker: the workers share the machine
    if backend == "nccl":                     # NCCL: one GPU per rank
        torch.cuda.set_device(rank % torch.cuda.device_count())
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


# ---- chapter 7: all-reduce latency ------------------------------------------------------------------

def _latency_worker(rank: int, world_size: int, sizes: Sequence[int], repeats: int,
                    subgroups: Sequence[int]) -> dict[tuple[int, str, int], float]:
    """Median seconds per collective, for every group size in ``subgroups`` (ranks 0..k-1)."""
    result = {}
    for k in subgroups:
        group = dist.new_group(list(range(k))) if k < world_size else dist.group.WORLD
        if rank < k:
            for n in sizes:
                x = torch.randn(n, dtype=torch.float64)
                table = [torch.empty_like(x) for _ in range(k)]
                for op in ("all_reduce", "all_gather"):
                    times = []
                    for _ in range(repeats + 5):               # 5 warm-up calls
                        dist.barrier(group=group)
                        t0 = time.perf_counter()
                        if op == "all_reduce":
                            dist.all_reduce(x, group=group)
                        else:
                            dist.all_gather(table, x, group=group)
                        times.append(time.perf_counter() - t0)
                    result[(k, op, n)] = sorted(times[5:])[len(times[5:]) // 2]
        dist.barrier()
    return result


def collective_latency(world_size: int = 4, sizes: Sequence[int] = (2 * 64 + 1,), repeats: int = 50,
                       subgroups: Sequence[int] | None = None) -> dict[tuple[int, str, int], float]:
    """Median latency in seconds of ``all_reduce`` and ``all_gather`` of ``n`` float64 values on gloo.

    One launch of ``world_size`` processes measures every group size in ``subgroups`` (default: 2 and
    ``world_size``), each over ranks ``0..k-1``. Returns ``{(k, op, n): seconds}`` as rank 0 measured it.
    """
    subgroups = tuple(subgroups or sorted({2, world_size}))
    return launch(_latency_worker, world_size, (tuple(sizes), repeats, subgroups))[0]


# ---- chapter 7: local BN vs SyncBN vs one process -------------------------------------------------

def _build(seed: int, sizes: Sequence[int], sync: bool) -> torch.nn.Module:
    from .models import mlp
    from .torch import SyncBatchNorm
    seeding.set_seed(seed)                # shifted by BNCOURSE_SEED_OFFSET
    model = mlp(list(sizes), norm="bn")
    return SyncBatchNorm.convert_sync_batchnorm(model) if sync else model


def _batches(seed: int, n: int, steps: int, batch: int) -> torch.Tensor:
    """Indices ``(steps, batch)`` of the training samples, the same for every mode of a seed (a generator of
    its own, seeded with ``10_000 + seed`` shifted by ``BNCOURSE_SEED_OFFSET``, apart from the initialization's)."""
    gen = seeding.torch_generator(10_000 + seed)
    need = steps * batch
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-need // n))])
    return order[:need].view(steps, batch)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    model.train()
    return acc


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor,
           lr: float, share: slice | None, world_size: int) -> tuple[list[float], float]:
    """SGD (momentum 0.9) on the mean loss of each global batch ``x[order[step]]``.

    ``share``: this worker's part of every batch (its gradients are summed over the workers by one
    ``all_reduce`` of all of them, as DDP does); ``None``: one process on the whole batch. Returns the
    loss of this process's share per step (summed over its samples, divided by the global batch size)
    and the seconds spent.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    params = list(model.parameters())
    losses = []
    start = time.perf_counter()
    for idx in order:
        if share is not None:
            idx = idx[share]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="sum") / order.shape[1]
        opt.zero_grad()
        loss.backward()
        if share is not None:
            flat = torch.cat([p.grad.flatten() for p in params])
            dist.all_reduce(flat)
            torch.nn.utils.vector_to_parameters(flat, [p.grad for p in params])
        opt.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def _demo_worker(rank: int, world_size: int, data: tuple, seeds: Sequence[int], sizes: Sequence[int],
                 steps: int, runs: Sequence[tuple[str, int]], lr: float,
                 latency_sizes: Sequence[int], offset: int) -> dict:
    # The parent's seed offset, set explicitly: the workers shift their seeds exactly as the parent does,
    # whatever environment the spawned process started with.
    os.environ[seeding.SEED_OFFSET_ENV] = str(offset)
    latency = (_latency_worker(rank, world_size, latency_sizes, 20, sorted({2, world_size}))
               if latency_sizes else {})
    x, y, x_val, y_val = (_as_float(t) for t in data)
    out: dict[Any, Any] = {"latency": latency}
    for seed in seeds:
        for mode, per_worker in runs:
            order = _batches(seed, len(x), steps, per_worker * world_size)
            share = slice(rank * per_worker, (rank + 1) * per_worker)
            model = _build(seed, sizes, mode == "sync")
            losses, seconds = _train(model, x, y, order, lr, share, world_size)
            out[mode, per_worker, seed] = {
                "losses": losses, "seconds": seconds, "val_acc": _accuracy(model, x_val, y_val),
                "state": {k: v.clone() for k, v in model.state_dict().items()}}
    return out


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255 if t.dtype == torch.uint8 else t


@dataclass
class Comparison:
    """What :func:`compare_training` measured.

    ``runs[mode, per_worker, seed]`` is a dict with ``losses`` (mean loss of the global batch per step),
    ``val_acc`` (evaluation mode; for the workers rank 0's model, whose running statistics DDP would
    broadcast), ``seconds`` (training time; for the workers the slowest) and ``rank_states`` (every
    worker's final ``state_dict``; for ``"single"`` the one ``state_dict``). ``mode`` is ``"single"``
    (one process, global batch ``world_size * per_worker``), ``"local"`` or ``"sync"``.
    ``latency`` is :func:`collective_latency`'s dictionary (empty when not measured).
    """

    world_size: int
    runs: dict[tuple[str, int, int], dict[str, Any]]
    latency: dict[tuple[int, str, int], float]


def compare_training(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
                     seeds: Sequence[int] = (0, 1, 2), world_size: int = 4,
                     runs: Sequence[tuple[str, int]] = (("local", 8), ("sync", 8)),
                     steps: int = 200, sizes: Sequence[int] = (784, 64, 64, 10), lr: float = 0.05,
                     latency_sizes: Sequence[int] = (), timeout: float = 600.0) -> Comparison:
    """Train an MLP with BN on the same batches from the same initialization: workers vs one process.

    Each entry ``(mode, per_worker)`` of ``runs`` trains ``world_size`` gloo workers with ``per_worker``
    samples each, ``mode`` ``"local"`` (``torch.nn.BatchNorm1d``: each worker normalizes with its own
    statistics) or ``"sync"`` (:class:`~bncourse.torch.SyncBatchNorm`); for every global batch size
    used, this process also trains ``"single"``: one process, ``torch.nn.BatchNorm1d``. The workers sum
    their gradients with one ``all_reduce`` per step, as DDP does, so every mode takes SGD steps
    (momentum 0.9, learning rate ``lr``) on the mean loss of the same global batches.

    ``x`` ``(n, 784)`` float or uint8 pixels, ``y`` ``(n,)`` labels; likewise the validation set. One
    launch does everything, including, with ``latency_sizes``, :func:`collective_latency` first; ``timeout``
    is that launch's deadline in seconds (generous: on a busy machine the workers wait for each other's cores).

    Seeds follow ``BNCOURSE_SEED_OFFSET`` (:mod:`bncourse.seeding`), in this process and in the workers, which
    receive this process's offset: seed ``s`` under offset ``k`` trains exactly as seed ``s + k`` under none.
    """
    data = (x, y, x_val, y_val)
    ranks = launch(_demo_worker, world_size, (data, tuple(seeds), tuple(sizes), steps,
                                              tuple(runs), lr, tuple(latency_sizes),
                                              seeding.seed_offset()), timeout=timeout)
    xf, yf, xvf, yvf = (_as_float(t) for t in data)
    results: dict[tuple[str, int, int], dict[str, Any]] = {}
    for seed in seeds:
        for per_worker in sorted({p for _, p in runs}):
            order = _batches(seed, len(xf), steps, per_worker * world_size)
            model = _build(seed, sizes, sync=False)
            losses, seconds = _train(model, xf, yf, order, lr, None, 1)
            results["single", per_worker, seed] = {
                "losses": losses, "seconds": seconds, "val_acc": _accuracy(model, xvf, yvf),
                "rank_states": [model.state_dict()]}
        for mode, per_worker in runs:
            recs = [r[mode, per_worker, seed] for r in ranks]
            results[mode, per_worker, seed] = {
                "losses": [sum(step) for step in zip(*(r["losses"] for r in recs))],
                "seconds": max(r["seconds"] for r in recs),
                "val_acc": recs[0]["val_acc"],
                "rank_states": [r["state"] for r in recs],
            }
    return Comparison(world_size, results, ranks[0]["latency"])
