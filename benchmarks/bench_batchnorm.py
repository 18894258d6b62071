"""Training-mode BatchNorm forward + backward: NumPy (staged, compact), bncourse.torch, torch native.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batchnorm.py --threads 1            # full run, CPU
    .venv/bin/python benchmarks/bench_batchnorm.py --quick --markdown     # short run, README table
    .venv/bin/python benchmarks/bench_batchnorm.py --device cuda          # torch paths on the GPU

What is timed: one training step of one BatchNorm layer, ``y = bn(x)`` then ``dL/dx, dL/dweight,
dL/dbias`` for a fixed ``dL/dy`` (float32, affine, running statistics updated):

* numpy staged: the plain ``batchnorm_forward`` then ``batchnorm_backward_staged``, the
  teaching code of chapter 5 (float64 inside);
* numpy compact: the tuned path ``bncourse.numpy._fast`` (``forward`` then ``backward``), every
  call allocating its arrays afresh;
* numpy layer: ``bncourse.numpy.BatchNorm`` forward + backward (compact; the layer recycles the
  previous step's cache buffer, so a step allocates only y and dx, like torch);
* bncourse.torch: ``bncourse.torch.batch_norm`` (custom autograd.Function), eager;
* torch native: ``torch.nn.functional.batch_norm`` with autograd.

How it is timed: the implementations of one shape run round-robin (A, B, C, D, A, B, ...), each
sample timing enough calls to last about 2 ms. Shared machines are noisy, so the report gives
medians with the interquartile range (IQR), and each ratio to torch native is the median of the
per-round ratios (both timed within the same round), with its IQR.

Effective bandwidth: a training step must move at least 8 tensor sizes of memory: the forward
reads x twice (statistics, then normalisation) and writes y (3); the backward reads dy and x twice
(the two reductions, then dx) and writes dx (5). ``GB/s = 8 * numel * itemsize / time``. It is set
beside the copy bandwidth measured in the same run (``np.copyto`` / ``out.copy_(x)``, which moves 2
tensor sizes: one read and one write), so "% copy" says how close a path gets to streaming speed.

This is a measurement, not a test: nothing asserts times. Only ratios measured side by side in one
run mean anything.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

SHAPES: Tuple[Tuple[int, ...], ...] = ((256, 1024), (4096, 1024), (60, 100),
                                       (64, 64, 32, 32), (32, 256, 14, 14))
TRAFFIC_TENSORS = 8          # minimal tensor-size transfers of forward + backward (see above)
TARGET_SAMPLE_S = 2e-3       # each timing sample runs calls for about this long


@dataclass
class Timing:
    name: str
    seconds: np.ndarray          # per-call time of every round
    ratio: Optional[np.ndarray]  # per-round time / torch native's time in the same round


def _quantiles(a: np.ndarray) -> Tuple[float, float, float]:
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(q1), float(med), float(q3)


def _calls_per_sample(fn: Callable[[], None], sync: Callable[[], None]) -> int:
    """How many calls make one sample last about TARGET_SAMPLE_S (after a warm-up call)."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(TARGET_SAMPLE_S / once))


def time_round_robin(fns: Dict[str, Callable[[], None]], repeats: int,
                     sync: Callable[[], None], reference: str) -> List[Timing]:
    loops = {name: _calls_per_sample(fn, sync) for name, fn in fns.items()}
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            sync()
            samples[name].append((time.perf_counter() - t0) / loops[name])
    ref = np.array(samples[reference]) if reference in samples else None
    return [Timing(name, np.array(s), None if ref is None else np.array(s) / ref)
            for name, s in samples.items()]


def numpy_step(shape: Tuple[int, ...], staged: bool, rng: np.random.Generator) -> Callable[[], None]:
    from bncourse.numpy import _fast, batchnorm_backward_staged, batchnorm_forward

    c = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    weight, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
    running_mean, running_var = np.zeros(c, np.float32), np.ones(c, np.float32)
    forward, backward = ((batchnorm_forward, batchnorm_backward_staged) if staged
                         else (_fast.forward, _fast.backward))

    def step() -> None:
        _, cache = forward(x, weight, bias, running_mean, running_var, training=True)
        backward(dy, cache)
    return step


def numpy_layer_step(shape: Tuple[int, ...], rng: np.random.Generator) -> Callable[[], None]:
    """``bncourse.numpy.BatchNorm``: the compact path, recycling its previous cache's buffer."""
    from bncourse.numpy import BatchNorm

    bn = BatchNorm(shape[1])
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)

    def step() -> None:
        bn(x)
        bn.backward(dy)
    return step


def torch_step(shape: Tuple[int, ...], batch_norm: Callable, device: str, seed: int,
               dtype=None, channels_last: bool = False) -> Callable[[], None]:
    """A training step of ``batch_norm`` on fixed data: ``dtype`` (default float32) and layout of x
    and dy; the parameters and running statistics are float32."""
    import torch

    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    x.requires_grad_(True)
    dy = torch.randn(shape, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    weight = torch.ones(c, device=device, requires_grad=True)
    bias = torch.zeros(c, device=device, requires_grad=True)
    running_mean, running_var = torch.zeros(c, device=device), torch.ones(c, device=device)

    def step() -> None:
        y = batch_norm(x, running_mean, running_var, weight, bias, training=True)
        # autograd.grad: no accumulation into .grad between calls
        torch.autograd.grad(y, (x, weight, bias), dy)
    return step


def copy_seconds(shape: Tuple[int, ...], device: str, repeats: int,
                 sync: Callable[[], None], dtype=None, channels_last: bool = False) -> float:
    """Median time of one copy of a tensor of ``shape``: float32 with NumPy on CPU, else a torch
    tensor of ``dtype`` (default float32) and layout on ``device``."""
    if device == "cpu" and dtype is None and not channels_last:
        src = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        dst = np.empty_like(src)
        fn: Callable[[], None] = lambda: np.copyto(dst, src)
    else:
        import torch
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        t_src = torch.randn(shape).to(device, dtype).contiguous(memory_format=fmt)
        t_dst = torch.empty_like(t_src)
        fn = lambda: t_dst.copy_(t_src)
    timing = time_round_robin({"copy": fn}, repeats, sync, reference="copy")[0]
    return float(np.median(timing.seconds))


def load_bncourse_torch() -> Optional[Callable]:
    try:
        from bncourse.torch import batch_norm
    except ImportError as exc:       # being written in parallel: skip with a note
        print(f"note: bncourse.torch not available ({exc}); its column is skipped", file=sys.stderr)
        return None
    return batch_norm


def run(threads: Sequence[int], device: str, repeats: int, shapes: Sequence[Tuple[int, ...]],
        markdown: bool) -> None:
    import torch
    import torch.nn.functional as F

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    sync: Callable[[], None] = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    ours = load_bncourse_torch()
    print(f"# BatchNorm training step (forward + backward), float32, device={device}, "
          f"torch {torch.__version__}, numpy {np.__version__}, {repeats} rounds; "
          f"traffic counted as {TRAFFIC_TENSORS} tensor sizes")
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for shape in shapes:
            rng = np.random.default_rng(0)
            fns: Dict[str, Callable[[], None]] = {}
            if device == "cpu":
                fns["numpy staged"] = numpy_step(shape, staged=True, rng=rng)
                fns["numpy compact"] = numpy_step(shape, staged=False, rng=rng)
                fns["numpy layer"] = numpy_layer_step(shape, rng=rng)
            if ours is not None:
                fns["bncourse.torch"] = torch_step(shape, ours, device, seed=0)
            fns["torch native"] = torch_step(shape, F.batch_norm, device, seed=0)
            timings = time_round_robin(fns, repeats, sync, reference="torch native")
            t_copy = copy_seconds(shape, device, repeats, sync)
            nbytes = int(np.prod(shape)) * 4
            copy_gbs = 2 * nbytes / t_copy / 1e9
            for t in timings:
                q1, med, q3 = _quantiles(t.seconds)
                r1, rmed, r3 = _quantiles(t.ratio)
                gbs = TRAFFIC_TENSORS * nbytes / med / 1e9
                rows.append((n_threads, shape, t.name, med, q1, q3, rmed, r1, r3, gbs, copy_gbs))
                if not markdown:
                    print(f"threads={n_threads} {str(shape):18s} {t.name:15s} "
                          f"{med * 1e3:9.3f} ms (IQR {q1 * 1e3:.3f}-{q3 * 1e3:.3f})  "
                          f"x native {rmed:5.2f} (IQR {r1:.2f}-{r3:.2f})  "
                          f"{gbs:6.1f} GB/s = {100 * gbs / copy_gbs:4.0f}% of copy {copy_gbs:.1f} GB/s",
                          flush=True)
    if markdown:
        print()
        print("| threads | shape | implementation | median ms (IQR) | × torch native (IQR) "
              "| effective GB/s | % of copy GB/s |")
        print("|---:|---|---|---:|---:|---:|---:|")
        for n_threads, shape, name, med, q1, q3, rmed, r1, r3, gbs, copy_gbs in rows:
            print(f"| {n_threads} | {shape} | {name} | {med * 1e3:.3f} ({q1 * 1e3:.3f}–{q3 * 1e3:.3f}) "
                  f"| {rmed:.2f} ({r1:.2f}–{r3:.2f}) | {gbs:.1f} | {100 * gbs / copy_gbs:.0f}% of "
                  f"{copy_gbs:.1f} |")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch thread counts to run, e.g. --threads 1 2 (NumPy's element-wise "
                             "ops are single-threaded either way)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: torch paths only, timed with torch.cuda.synchronize()")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds per shape (default 21, --quick 7)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    repeats = args.repeats or (7 if args.quick else 21)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run(args.threads, args.device, repeats, SHAPES, args.markdown)


if __name__ == "__main__":
    main()
