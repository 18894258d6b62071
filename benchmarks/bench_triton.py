"""One BatchNorm training step: bncourse.triton vs torch native vs bncourse.torch, against a copy.

Run from the repository root on a machine with a GPU::

    .venv/bin/python benchmarks/bench_triton.py                       # writes benchmarks/results/
    .venv/bin/python benchmarks/bench_triton.py --quick               # fewer rounds
    .venv/bin/python benchmarks/bench_triton.py --device cpu --interpret --smoke   # CPU check of the
                                                                      # script itself (no timings worth
                                                                      # reading: Triton's interpreter)

What is timed: ``y = batch_norm(x, ...)`` in training (affine, float32 parameters, running statistics
updated) and ``torch.autograd.grad(y, (x, weight, bias), dy)``, for every benchmark shape of
``bench_batchnorm.py``, in NCHW (contiguous) and channels_last (4-D shapes), float32 and bfloat16:

* ``bncourse.triton``: the fused kernels (two launches forward, two backward);
* ``torch native``: ``torch.nn.functional.batch_norm`` (cuDNN / ATen kernels);
* ``bncourse.torch``: the same formulas from plain tensor ops (dozens of launches).

Timing is round-robin as in ``bench_batchnorm.py`` (medians with interquartile ranges; the ratio to
native is the median of per-round ratios). A device-to-device copy of the same tensor
(``dst.copy_(x)``: one read, one write) is timed in the same run.

Effective bandwidth: the kernels of a training step move 8 tensor sizes (forward: read x for the
statistics, read x and write y; backward: read x and dy for the sums, read x and dy and write dx), so
``GB/s = 8 * numel * itemsize / time`` and "% of copy" compares it with the copy's ``2 * numel *
itemsize / time``. The least any implementation must move is 5 tensor sizes (read x, write y; read x
and dy, write dx), reached only if a whole channel stays on chip between passes; the ``bound ms``
column is that traffic at copy speed.

The results go to ``--out`` (default ``benchmarks/results/``) as ``triton_<device>_<date>.json`` and
``.md``, with the device, the driver and the torch/Triton versions. Nothing here asserts times.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
PASSES = 8          # tensor-size transfers of the fused kernels (see above)
MINIMAL = 5         # the least a training step can move
SMOKE_SHAPES: Tuple[Tuple[int, ...], ...] = ((32, 4), (2, 4, 3, 3))


def _setup(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--interpret", action="store_true",
                        help="run the Triton kernels in Triton's interpreter (CPU tensors; slow)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny shapes {SMOKE_SHAPES} and 3 rounds: checks that the script runs")
    parser.add_argument("--quick", action="store_true", help="7 rounds instead of 21")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder for the JSON and Markdown results ('-' prints only)")
    args = parser.parse_args(argv)
    if args.interpret:
        # Triton reads this when it is first imported: before anything imports it
        os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return args


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str, interpret: bool) -> dict:
    import torch
    env = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "interpreted": interpret}
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(device=torch.cuda.get_device_name(0), driver=_driver_version(),
                   cuda=torch.version.cuda, sms=p.multi_processor_count,
                   memory_gib=round(p.total_memory / 2 ** 30, 1))
    else:
        env.update(device=f"CPU ({platform.processor() or platform.machine()})", driver=None)
    return env


def run(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from bench_batchnorm import SHAPES, _quantiles, copy_seconds, time_round_robin, torch_step

    import bncourse.torch as bt
    import bncourse.triton as btr

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False "
                         "(for a CPU check of this script: --device cpu --interpret --smoke)")
    sync: Callable[[], None] = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    impls: Dict[str, Callable] = {"torch native": F.batch_norm, "bncourse.torch": bt.batch_norm}
    if not btr.is_available():
        print(f"note: {btr.INSTALL_HINT}; its column is skipped", file=sys.stderr)
    elif args.device == "cpu" and not args.interpret:
        print("note: bncourse.triton runs on CPU only with --interpret; its column is skipped",
              file=sys.stderr)
    else:
        impls = {"bncourse.triton": btr.batch_norm, **impls}
    repeats = args.repeats or (3 if args.smoke else 7 if args.quick else 21)
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    env = environment(args.device, args.interpret)
    print(f"# {env['device']}, driver {env['driver']}, torch {env['torch']}, triton {env['triton']}, "
          f"{repeats} rounds", flush=True)
    rows: List[dict] = []
    for shape in shapes:
        for channels_last in ((False, True) if len(shape) == 4 else (False,)):
            for dtype in (torch.float32, torch.bfloat16):
                fns = {name: torch_step(shape, fn, args.device, 0, dtype, channels_last)
                       for name, fn in impls.items()}
                timings = time_round_robin(fns, repeats, sync, reference="torch native")
                copy_s = copy_seconds(shape, args.device, repeats, sync, dtype, channels_last)
                nbytes = torch.Size(shape).numel() * torch.finfo(dtype).bits // 8
                copy_gbs = 2 * nbytes / copy_s / 1e9
                for t in timings:
                    q1, med, q3 = _quantiles(t.seconds)
                    r1, rmed, r3 = _quantiles(t.ratio)
                    gbs = PASSES * nbytes / med / 1e9
                    row = {"shape": list(shape), "layout": "channels_last" if channels_last else
                           "contiguous", "dtype": str(dtype).removeprefix("torch."),
                           "implementation": t.name, "median_ms": med * 1e3, "q1_ms": q1 * 1e3,
                           "q3_ms": q3 * 1e3, "x_native": rmed, "x_native_q1": r1,
                           "x_native_q3": r3, "gbs": gbs, "copy_gbs": copy_gbs,
                           "pct_copy": 100 * gbs / copy_gbs,
                           "bound_ms": MINIMAL * nbytes / (copy_gbs * 1e9) * 1e3}
                    rows.append(row)
                    print(f"{str(shape):18s} {row['layout']:13s} {row['dtype']:8s} {t.name:16s} "
                          f"{row['median_ms']:8.3f} ms  x native {rmed:5.2f}  {gbs:7.1f} GB/s = "
                          f"{row['pct_copy']:4.0f}% of copy {copy_gbs:.1f}", flush=True)
    return {"environment": env, "passes": PASSES, "minimal_passes": MINIMAL, "repeats": repeats,
            "rows": rows}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# BatchNorm training step on {env['device']}", "",
             f"{env['date']}; driver {env['driver']}, torch {env['torch']}, Triton {env['triton']}"
             f"{' (interpreter)' if env['interpreted'] else ''}; median of {result['repeats']} "
             f"rounds. GB/s counts {result['passes']} tensor sizes per step; bound = "
             f"{result['minimal_passes']} tensor sizes at copy speed.", "",
             "| shape | layout | dtype | implementation | median ms (IQR) | × native | GB/s "
             "| % of copy | bound ms |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {tuple(r['shape'])} | {r['layout']} | {r['dtype']} | {r['implementation']} "
                     f"| {r['median_ms']:.3f} ({r['q1_ms']:.3f}–{r['q3_ms']:.3f}) "
                     f"| {r['x_native']:.2f} | {r['gbs']:.1f} | {r['pct_copy']:.0f}% "
                     f"| {r['bound_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> Optional[Path]:
    args = _setup(argv)
    result = run(args)
    text = markdown(result)
    if str(args.out) == "-":
        print(text)
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    env = result["environment"]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", env["device"]).strip("-").lower()
    stem = f"triton_{slug}_{env['date'][:10]}{'_interpreted' if env['interpreted'] else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    print(f"wrote {args.out / stem}.json and .md")
    return args.out / f"{stem}.json"


if __name__ == "__main__":
    main()
