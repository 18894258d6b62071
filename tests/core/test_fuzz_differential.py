"""Differential fuzzing: ``bncourse.torch`` and ``bncourse.numpy`` against ``torch.nn``.

Hypothesis draws whole cases in four classes, and each case is run through all three
implementations and compared on everything observable:

* ``layouts``   -- transposed / permuted views, stepped slices, expanded (stride-0) inputs,
  channels_last(_3d), non-contiguous ``dy``, empty spatial dimensions; the NumPy twin also gets
  negative strides, Fortran order and read-only arrays. Output and gradient *strides* are compared
  with torch's, and double backward (float64) too.
* ``specials``  -- ``inf``, ``nan``, tiny and huge magnitudes, constant channels, ``eps`` below the
  dtype's range.
* ``arguments`` -- the functional form with wrong or unusual arguments (non-bool ``training``,
  0-d tensor ``momentum`` / ``eps``, ``weight=None`` with a bias, wrong sizes, dtypes and types,
  several wrong at once): the error type and message, or the results.
* ``steps``     -- modules over several steps: dtypes (incl. mixed float16/bfloat16 with float32
  parameters), ``affine`` / ``bias`` / ``track_running_stats``, ``momentum`` incl. ``None`` and
  values outside [0, 1], train/eval switches, batches of size 0 and 1, the attribute flip of
  ``track_running_stats``.

Compared each step: outputs, input / weight / bias gradients, running statistics,
``num_batches_tracked``, and the error type and message (the NumPy path writes sizes as ``(1, 3)``
rather than ``torch.Size([1, 3])``). Tolerances live in ``tolerances.py``.

CI runs a fixed seed and ``DEFAULT_EXAMPLES`` examples per class (well under a minute);
``BNCOURSE_FUZZ_EXAMPLES=2000`` runs more. ``BNCOURSE_FUZZ_COUNT=<file>`` records every case's
verdict as a JSON line instead of failing, and ``python tests/core/test_fuzz_differential.py <file>``
prints the count per class.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import bncourse.numpy as bnp
import bncourse.torch as bt
import tolerances as tol
from torch_compat import TORCH_213_EPS_WORDING, TORCH_HAS_BIAS_KW

torch.set_num_threads(1)

DEFAULT_EXAMPLES = 60
EXAMPLES = int(os.environ.get("BNCOURSE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
COUNT_FILE = os.environ.get("BNCOURSE_FUZZ_COUNT")

pytestmark = pytest.mark.skipif(not (TORCH_HAS_BIAS_KW and TORCH_213_EPS_WORDING),
                                reason="the reference is torch >= 2.13 (bias=, eps wording)")

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                         database=None, print_blob=True,
                         suppress_health_check=list(HealthCheck))

NN_CLASSES = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
              5: torch.nn.BatchNorm3d}
BT_CLASSES = {2: bt.BatchNorm1d, 3: bt.BatchNorm1d, 4: bt.BatchNorm2d, 5: bt.BatchNorm3d}
NP_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


# --- verdicts ------------------------------------------------------------------------------------

class Differ(AssertionError):
    """One observable difference between an implementation and torch.nn."""


def record(klass: str, run: Callable[[], None]) -> None:
    """Run one case; in count mode write its verdict instead of raising."""
    if COUNT_FILE is None:
        run()
        return
    try:
        run()
        verdict = {"class": klass, "differ": False}
    except Exception as exc:  # noqa: BLE001 - every failure is a difference to count
        verdict = {"class": klass, "differ": True, "what": f"{type(exc).__name__}: {exc}"[:3000]}
    with open(COUNT_FILE, "a") as fh:
        fh.write(json.dumps(verdict) + "\n")


def _np64(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to(torch.float64).cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def check_close(what: str, ours, ref: torch.Tensor | None, dtype: torch.dtype, scale,
                steps: int = 1, param: bool = False, param_dtype: torch.dtype | None = None,
                truth: torch.Tensor | None = None) -> None:
    """Values (see ``tolerances``): non-finite exactly, finite within the allowance.

    ``truth``: torch.nn's result in float64 on the same (rounded) inputs. Where torch's own
    float16/bfloat16/float32 result is off and ours is within the allowance of the truth, ours is
    kept (torch's mixed-precision paths round intermediate values that bncourse keeps in float32;
    and torch 2.13's CPU backward reads a contiguous ``dy`` as channels_last when the input is
    channels_last-dense only through its size-1 dimensions, e.g. ``(1, 4, 2, 1, 1)`` with strides
    ``(1, 1, 4, 8, 4)``: its ``dx`` is then permuted).
    """
    try:
        _check_close(what, ours, ref, dtype, scale, steps, param, param_dtype)
    except Differ:
        if truth is None or not isinstance(ours, (torch.Tensor, np.ndarray)):
            raise
        # the truth rounded to the result's dtype: an exact value beyond float16's range is inf
        rounded = truth.detach().to(ref.dtype) if isinstance(ref, torch.Tensor) else truth
        _check_close(what + " (and against torch.nn in float64)", ours, rounded, dtype, scale,
                     steps, param, param_dtype, same_dtype=False)


def _check_close(what: str, ours, ref, dtype, scale, steps, param, param_dtype,
                 same_dtype: bool = True) -> None:
    if ref is None:
        if ours is not None:
            raise Differ(f"{what}: torch has None, ours {type(ours).__name__}")
        return
    if ours is None:
        raise Differ(f"{what}: ours is None")
    a, e = _np64(ours), _np64(ref)
    if a.shape != e.shape:
        raise Differ(f"{what}: shape {a.shape} != torch's {e.shape}")
    if same_dtype and isinstance(ours, torch.Tensor) and ours.dtype != ref.dtype:
        raise Differ(f"{what}: dtype {ours.dtype} != torch's {ref.dtype}")
    fin = np.isfinite(e)
    same_special = (np.isnan(a) & np.isnan(e)) | (a == e)
    if not np.all(same_special[~fin]):
        raise Differ(f"{what}: non-finite values differ: ours {a[~fin][:5]} torch {e[~fin][:5]}")
    allowed = np.broadcast_to(tol.allowed_error(e, dtype, scale, steps, param, param_dtype),
                              e.shape)
    with np.errstate(all="ignore"):
        bad = fin & ~(np.abs(a - e) <= allowed)
    if np.any(bad):
        i = np.argwhere(bad)[0]
        raise Differ(f"{what}: {bad.sum()} elements differ, e.g. at {tuple(i)} ours {a[tuple(i)]!r} "
                     f"torch {e[tuple(i)]!r} allowed {allowed[tuple(i)]!r}")


def layout_key(t: torch.Tensor) -> tuple:
    """Strides on the dimensions of size > 1 (the ones that address memory)."""
    return tuple((d, s) for d, s in zip(t.shape, t.stride()) if d > 1)


def check_strides(what: str, ours: torch.Tensor | None, ref: torch.Tensor | None) -> None:
    if ours is None or ref is None:
        return
    if layout_key(ours) != layout_key(ref):
        raise Differ(f"{what}: strides {ours.stride()} != torch's {ref.stride()} "
                     f"(shape {tuple(ref.shape)})")


_SIZE = re.compile(r"torch\.Size\(\[([^\]]*)\]\)")


def numpy_wording(message: str) -> str:
    """torch's message as the NumPy path words it: sizes ``(1, 3)``."""
    def repl(m):
        dims = m.group(1)
        return f"({dims},)" if dims and "," not in dims else f"({dims})"
    return _SIZE.sub(repl, message)


def check_errors(what: str, ours: BaseException | None, ref: BaseException | None,
                 numpy: bool = False) -> None:
    if ref is None and ours is None:
        return
    if ref is None:
        raise Differ(f"{what}: ours raised {type(ours).__name__}: {ours}; torch did not")
    if ours is None:
        raise Differ(f"{what}: torch raised {type(ref).__name__}: {ref}; ours did not")
    expected = numpy_wording(str(ref)) if numpy else str(ref)
    if type(ours) is not type(ref) or str(ours) != expected:
        raise Differ(f"{what}: ours {type(ours).__name__}: {ours!s} | torch {type(ref).__name__}: "
                     f"{expected}")


def attempt(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - compared with torch's
        return None, exc


# --- drawing tensors in a layout -----------------------------------------------------------------

TORCH_LAYOUTS = ("contiguous", "channels_last", "permuted", "stepped", "expanded", "transposed",
                 "stepped_channels_last")
NUMPY_LAYOUTS = ("same", "negative", "fortran", "readonly", "contiguous_copy")


@st.composite
def shapes(draw, min_n: int = 0, allow_empty_spatial: bool = True) -> tuple[int, ...]:
    rank = draw(st.sampled_from((2, 3, 4, 5)))
    n = draw(st.sampled_from([k for k in (0, 1, 2, 3, 4, 7) if k >= min_n]))
    c = draw(st.integers(1, 4))
    lo = 0 if allow_empty_spatial and draw(st.booleans()) and draw(st.booleans()) else 1
    spatial = tuple(draw(st.integers(lo, 3)) for _ in range(rank - 2))
    return (n, c) + spatial


def in_layout(values: torch.Tensor, kind: str, rng: np.random.Generator) -> torch.Tensor:
    """A tensor with ``values``' contents (shape, dtype) in memory layout ``kind``."""
    nd = values.dim()
    if kind == "channels_last" and nd in (4, 5):
        fmt = torch.channels_last if nd == 4 else torch.channels_last_3d
        return values.contiguous(memory_format=fmt)
    if kind in ("permuted", "transposed", "channels_last"):
        perm = list(rng.permutation(nd)) if kind != "transposed" else list(range(nd))[::-1]
        inv = list(np.argsort(perm))
        return values.permute(perm).contiguous().permute(inv)
    if kind in ("stepped", "stepped_channels_last"):
        steps = [int(rng.integers(1, 3)) for _ in range(nd)]
        steps[1] = 2
        big = torch.zeros([max(1, d) * s for d, s in zip(values.shape, steps)], dtype=values.dtype)
        if kind == "stepped_channels_last" and nd in (4, 5):   # a non-dense NHWC view
            big = big.contiguous(memory_format=torch.channels_last if nd == 4
                                 else torch.channels_last_3d)
        view = big[tuple(slice(0, d * s, s) for d, s in zip(values.shape, steps))]
        view.copy_(values)
        return view
    if kind == "expanded":
        # constant along a random subset of the non-channel dimensions: stride 0 there
        dims = [i for i in range(nd) if i != 1 and rng.random() < 0.5 and values.shape[i] > 0]
        index = tuple(slice(0, 1) if i in dims else slice(None) for i in range(nd))
        return values[index].expand(values.shape)
    return values.contiguous()


def numpy_layout(a: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The same values as ``a`` in a NumPy-only layout."""
    if kind == "negative":
        axes = tuple(i for i in range(a.ndim) if rng.random() < 0.5) or (0,)
        return np.flip(np.ascontiguousarray(np.flip(a, axes)), axes)
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "readonly":
        b = a.copy()
        b.setflags(write=False)
        return b
    if kind == "contiguous_copy":
        return np.ascontiguousarray(a)
    return a


def draw_values(shape, dtype: torch.dtype, rng: np.random.Generator, special: str = "none"
                ) -> torch.Tensor:
    """Random data; ``special`` injects IEEE special values or extreme magnitudes."""
    n_el = math.prod(shape)
    base = rng.standard_normal(n_el)
    offset, spread = rng.choice([0.0, 0.0, 3.0, -50.0]), rng.choice([1.0, 1.0, 0.5, 4.0])
    v = base * spread + offset
    if special == "huge":
        v = v * {torch.float64: 1e150, torch.float32: 1e25, torch.float16: 1e3,
                 torch.bfloat16: 1e25}[dtype]
    elif special == "tiny":
        v = v * {torch.float64: 1e-160, torch.float32: 1e-25, torch.float16: 1e-3,
                 torch.bfloat16: 1e-25}[dtype]
    elif special == "offset" and dtype in (torch.float64, torch.float32):
        v = v * 1e-2 + 1e4
    t = torch.from_numpy(v.reshape(shape)).to(dtype)
    if special in ("inf", "nan", "mixed") and n_el:
        flat = t.view(-1)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(0, n_el))
            flat[i] = {"inf": math.inf, "nan": math.nan,
                       "mixed": rng.choice([math.inf, -math.inf, math.nan])}[special]
    if special == "constant" and n_el:
        ch = int(rng.integers(0, shape[1]))
        t[:, ch] = float(rng.choice([0.3, 1e4, -7.0, 0.0]))
    return t


# --- one module case: torch.nn, bncourse.torch, bncourse.numpy over several steps ---------------

@dataclass
class Step:
    training: bool
    shape: tuple[int, ...]
    x_layout: str = "contiguous"
    dy_layout: str = "contiguous"
    np_layout: str = "same"
    special: str = "none"
    flip_tracking: bool = False


@dataclass
class ModuleCase:
    x_dtype: torch.dtype
    p_dtype: torch.dtype
    eps: float
    momentum: float | None
    affine: bool
    bias: bool
    track: bool
    steps: list[Step] = field(default_factory=list)
    double_backward: bool = False
    seed: int = 0
    impl: str = "torch"        # bncourse.torch BatchNorm; "renorm", "sync", "triton": the others


def _state(m) -> dict:
    return {k: getattr(m, k) for k in ("running_mean", "running_var", "num_batches_tracked")}


def _ref_stats(x64: np.ndarray, batch_stats: bool, ref_module, eps: float):
    c = x64.shape[1]
    axes = tuple(i for i in range(x64.ndim) if i != 1)
    if batch_stats:
        if x64.size == 0:
            return np.zeros(c), np.ones(c)
        with np.errstate(all="ignore"):
            return np.mean(x64, axis=axes), np.var(x64, axis=axes)
    return _np64(ref_module.running_mean), _np64(ref_module.running_var)


def run_module_case(case: ModuleCase) -> None:
    """All steps of ``case``; a difference names the step, then the whole case."""
    try:
        _run_module_case(case)
    except Differ as exc:
        raise Differ(f"{exc} | {case}") from None


def eval_truth(x64: torch.Tensor, dy64: torch.Tensor, ref) -> dict:
    """Evaluation mode in float64 with the running statistics *as stored* by torch.nn (a float64
    twin's own statistics drift from the rounded ones): ``y = (x - rm) / sqrt(rv + eps) * w + b``."""
    shape = (1, -1) + (1,) * (x64.dim() - 2)
    f = lambda t: None if t is None else t.detach().to(torch.float64).reshape(shape)  # noqa: E731
    rm, rv, w, b = f(ref.running_mean), f(ref.running_var), f(ref.weight), f(ref.bias)
    xhat = (x64 - rm) / torch.sqrt(rv + ref.eps)
    axes = [i for i in range(x64.dim()) if i != 1]
    out = {"y": xhat * (1.0 if w is None else w) + (0.0 if b is None else b),
           "dx": dy64 / torch.sqrt(rv + ref.eps) * (1.0 if w is None else w),
           "dbias": dy64.sum(axes)}
    if w is not None:
        out["dweight"] = (dy64 * xhat).sum(axes)
    return out


def _run_module_case(case: ModuleCase) -> None:
    rng = np.random.default_rng(case.seed)
    rank = len(case.steps[0].shape)
    c = case.steps[0].shape[1]
    kw = dict(eps=case.eps, momentum=case.momentum, affine=case.affine,
              track_running_stats=case.track, bias=case.bias, dtype=case.p_dtype)
    ref = (torch.nn.SyncBatchNorm if case.impl == "sync" else NN_CLASSES[rank])(c, **kw)
    ours = {"torch": lambda: BT_CLASSES[rank](c, **kw), "sync": lambda: bt.SyncBatchNorm(c, **kw),
            "renorm": lambda: (bt.BatchRenorm1d if rank < 4 else bt.BatchRenorm2d)(
                c, **kw, r_max=1.0, d_max=0.0),
            "triton": lambda: _triton_modules()[rank](c, **kw)}[case.impl]()
    use_numpy = case.impl == "torch" and case.x_dtype in NP_DTYPES and case.p_dtype in NP_DTYPES
    twin = None
    if use_numpy:
        twin = bnp.BatchNorm(c, case.eps, case.momentum, case.affine, case.track, bias=case.bias,
                             dtype=NP_DTYPES[case.p_dtype])
    with torch.no_grad():  # non-trivial parameters
        for name in ("weight", "bias"):
            p = getattr(ref, name)
            if p is not None:
                p.copy_(torch.from_numpy(rng.standard_normal(c) + (name == "weight")))
        if ref.running_mean is not None:
            ref.running_mean.copy_(torch.from_numpy(rng.standard_normal(c)))
            ref.running_var.copy_(torch.from_numpy(rng.random(c) + 0.5))
    ours.load_state_dict(ref.state_dict())
    # torch.nn in float64 on contiguous copies of the same (rounded) inputs: the truth where torch's
    # low-precision paths round more than ours, or its channels_last kernels misread a
    # differently-laid-out dy (see the report in check_close's docstring)
    ref64 = NN_CLASSES[rank](c, **{**kw, "dtype": torch.float64})
    ref64.load_state_dict(ref.state_dict())
    if twin is not None:
        twin.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})

    for k, step in enumerate(case.steps, start=1):
        where = f"step {k} ({'train' if step.training else 'eval'}, {step.shape}, x {step.x_layout}, " \
                f"dy {step.dy_layout}, np {step.np_layout}, {step.special}, x {case.x_dtype}, " \
                f"params {case.p_dtype})"
        for m in (ref, ours) + tuple(m for m in (twin, ref64) if m is not None):
            m.train(step.training)
            if step.flip_tracking:
                m.track_running_stats = not m.track_running_stats
        values = draw_values(step.shape, case.x_dtype, rng, step.special)
        x = in_layout(values, step.x_layout, rng).requires_grad_()
        dy = in_layout(draw_values(step.shape, case.x_dtype, rng), step.dy_layout, rng)
        batch_stats = step.training or ref.running_mean is None
        x64 = _np64(x)     # an expanded layout repeats values: x's, not the drawn ones
        mean, var = _ref_stats(x64, batch_stats, ref, case.eps)

        y_ref, err_ref = attempt(lambda: ref(x))
        x64t = x.detach().to(torch.float64).contiguous().requires_grad_()
        y64 = None if ref64 is None or err_ref is not None else ref64(x64t)
        truth: dict = {"y": y64}
        if y64 is not None:
            leaves64 = [x64t] + [p for p in (ref64.weight, ref64.bias) if p is not None]
            truth.update(zip(["dx", "dweight", "dbias"][:len(leaves64)] if ref64.weight is not None
                             else ["dx", "dbias"][:len(leaves64)],
                             torch.autograd.grad(y64, leaves64,
                                                 dy.to(torch.float64).contiguous())))
        y_ours, err_ours = attempt(lambda: ours(x))
        if y64 is not None and not batch_stats:
            truth = eval_truth(x64t.detach(), dy.to(torch.float64), ref)
        check_errors(f"bncourse.torch {where}", err_ours, err_ref)
        y_np = err_np = None
        if twin is not None:
            x_np = numpy_layout(x.detach().numpy(), step.np_layout, rng)
            y_np, err_np = attempt(lambda: twin.forward(x_np))
            check_errors(f"bncourse.numpy {where}", err_np, err_ref, numpy=True)
        scales = tol.condition_scales(x64, _np64(dy), None if ref.weight is None else
                                      _np64(ref.weight), mean, var, case.eps, batch_stats,
                                      case.x_dtype)
        if err_ref is None:
            check_close(f"bncourse.torch y {where}", y_ours, y_ref, case.x_dtype, scales.y,
                        param_dtype=case.p_dtype, truth=truth["y"])
            check_strides(f"bncourse.torch y {where}", y_ours, y_ref)
            if twin is not None:
                check_close(f"bncourse.numpy y {where}", y_np, y_ref, case.x_dtype, scales.y,
                            param_dtype=case.p_dtype, truth=truth["y"])
            leaves = [x] + [p for p in (ref.weight, ref.bias) if p is not None]
            our_leaves = [x] + [p for p in (ours.weight, ours.bias) if p is not None]
            g_ref = torch.autograd.grad(y_ref, leaves, dy, create_graph=case.double_backward)
            g_ours = torch.autograd.grad(y_ours, our_leaves, dy, create_graph=case.double_backward)
            names = ["dx"] + [nm for nm, p in (("dweight", ref.weight), ("dbias", ref.bias))
                              if p is not None]
            sc = {"dx": scales.dx, "dweight": scales.dweight, "dbias": scales.dbias}
            for nm, a, e in zip(names, g_ours, g_ref):
                dt = case.x_dtype if nm == "dx" else case.p_dtype
                check_close(f"bncourse.torch {nm} {where}", a, e, dt, sc[nm], param=nm != "dx",
                            param_dtype=case.p_dtype, truth=truth.get(nm))
            check_strides(f"bncourse.torch dx {where}", g_ours[0], g_ref[0])
            if twin is not None:
                dx_np = twin.backward(numpy_layout(dy.numpy(), step.np_layout, rng))
                got = {"dx": dx_np, "dweight": twin.grad_weight, "dbias": twin.grad_bias}
                for nm, e in zip(names, g_ref):
                    dt = case.x_dtype if nm == "dx" else case.p_dtype
                    check_close(f"bncourse.numpy {nm} {where}", got[nm], e, dt, sc[nm],
                                param=nm != "dx", param_dtype=case.p_dtype, truth=truth.get(nm))
            if case.double_backward and step.shape[0] > 0:
                v = torch.from_numpy(rng.standard_normal(step.shape)).to(case.x_dtype)
                gg_ref = (torch.autograd.grad((g_ref[0] * v).sum(), leaves, allow_unused=True)
                          if g_ref[0].requires_grad else [None] * len(leaves))
                # a dx that depends on nothing requiring grad (eval without weight) still has a
                # graph in both, whose gradients are None (zeros)
                gg_ours = (torch.autograd.grad((g_ours[0] * v).sum(), our_leaves, allow_unused=True)
                           if g_ours[0].requires_grad else [None] * len(our_leaves))
                for nm, a, e in zip(names, gg_ours, gg_ref):
                    a = torch.zeros_like(e) if a is None and e is not None else a
                    e = torch.zeros_like(a) if e is None and a is not None else e
                    check_close(f"bncourse.torch double backward {nm} {where}", a, e,
                                case.x_dtype, np.inf if not np.isfinite(x64).all() else
                                1e3 * np.max(scales.dx, initial=1.0) ** 2, param=True)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            e = getattr(ref, name)
            scale = getattr(scales, name, 0.0) if name != "num_batches_tracked" else 0.0
            for label, m in (("bncourse.torch", ours), ("bncourse.numpy", twin)):
                if m is None:
                    continue
                a = getattr(m, name)
                if name == "num_batches_tracked":
                    if (e is None) != (a is None) or (e is not None and int(a) != int(e)):
                        raise Differ(f"{label} {name} {where}: {a} != torch's {e}")
                    continue
                check_close(f"{label} {name} {where}", a, e, case.p_dtype, scale, steps=k,
                            param=True, truth=None if ref64 is None else getattr(ref64, name))


# --- strategies of module cases ------------------------------------------------------------------

DTYPE_PAIRS = [(torch.float64, torch.float64), (torch.float32, torch.float32),
               (torch.float16, torch.float32), (torch.bfloat16, torch.float32),
               (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16)]


@st.composite
def module_cases(draw, klass: str) -> ModuleCase:
    if klass == "layouts":
        x_dtype, p_dtype = draw(st.sampled_from(DTYPE_PAIRS[:2]))
    else:
        x_dtype, p_dtype = draw(st.sampled_from(DTYPE_PAIRS))
    shape = draw(shapes(min_n=0))
    n_steps = draw(st.integers(1, 4 if klass == "steps" else 2))
    steps = []
    for i in range(n_steps):
        s = shape
        if klass == "steps" and i > 0 and draw(st.booleans()):
            s = (draw(st.sampled_from((0, 1, 2, 5))),) + shape[1:]
        step = Step(training=draw(st.booleans()), shape=s)
        if klass == "layouts":
            step.x_layout = draw(st.sampled_from(TORCH_LAYOUTS))
            step.dy_layout = draw(st.sampled_from(TORCH_LAYOUTS))
            step.np_layout = draw(st.sampled_from(NUMPY_LAYOUTS))
        if klass == "specials":
            step.special = draw(st.sampled_from(("inf", "nan", "mixed", "huge", "tiny", "constant",
                                                 "offset", "none")))
            step.x_layout = draw(st.sampled_from(("contiguous", "channels_last", "permuted")))
        if klass == "steps":
            step.flip_tracking = draw(st.integers(0, 7)) == 0
        steps.append(step)
    tiny_eps = {torch.float64: 1e-320, torch.float32: 1e-50, torch.float16: 1e-10,
                torch.bfloat16: 1e-50}[x_dtype]
    eps_choices = (1e-5, 1e-3, 0.5) if klass != "specials" else (1e-5, tiny_eps, 1e-30, 1e10)
    momentum = draw(st.sampled_from((0.1, None, 0.0, 1.0, 0.5, -0.5, 1.5) if klass == "steps"
                                    else (0.1, None)))
    affine = draw(st.booleans())
    return ModuleCase(
        x_dtype=x_dtype, p_dtype=p_dtype, eps=draw(st.sampled_from(eps_choices)),
        momentum=momentum, affine=affine, bias=draw(st.booleans()) if affine else True,
        track=draw(st.booleans()) or klass == "layouts", steps=steps,
        double_backward=klass == "layouts" and x_dtype == torch.float64 and draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
    )


@seed(20261129)
@FUZZ_SETTINGS
@given(case=module_cases("layouts"))
def test_fuzz_layouts(case):
    record("layouts", lambda: run_module_case(case))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns on inf/nan arithmetic: the point
@seed(20261130)
@FUZZ_SETTINGS
@given(case=module_cases("specials"))
def test_fuzz_specials(case):
    record("specials", lambda: run_module_case(case))


@seed(20261131)
@FUZZ_SETTINGS
@given(case=module_cases("steps"))
def test_fuzz_steps(case):
    record("steps", lambda: run_module_case(case))


# --- the functional form with unusual and wrong arguments ---------------------------------------

class Arg:
    """A drawn argument: how to build it (fresh per implementation) and a label."""

    def __init__(self, label: str, make: Callable[[], Any]):
        self.label, self.make = label, make

    def __repr__(self) -> str:
        return self.label


def tensor_arg(label: str, shape, dtype=torch.float64, fill: float | None = None,
               requires_grad: bool = False, seed_: int = 0) -> Arg:
    def make():
        g = torch.Generator().manual_seed(seed_)
        t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        if fill is not None:
            t.fill_(fill)
        t = t.to(dtype)
        return t.requires_grad_() if requires_grad else t
    return Arg(label, make)


@st.composite
def argument_cases(draw):
    shape = draw(shapes(min_n=0, allow_empty_spatial=True))
    c = shape[1]
    x_dtype = draw(st.sampled_from((torch.float64, torch.float64, torch.float32, torch.float16,
                                    torch.int64)))
    s = draw(st.integers(0, 1000))
    x_choices = [tensor_arg("x", shape, x_dtype, seed_=s)] * 12 + [
        Arg("None", lambda: None), Arg("list", lambda: [[1.0, 2.0]]),
        tensor_arg("x 1-D", (5,), seed_=s), tensor_arg("x 0-D", (), seed_=s)]
    x = draw(st.sampled_from(x_choices))

    def param(name, fill=None):
        pd = draw(st.sampled_from((x_dtype if x_dtype.is_floating_point else torch.float64,) * 3
                                  + (torch.float32, torch.float64)))
        return draw(st.sampled_from(
            [tensor_arg(name, (c,), pd, fill, seed_=s + len(name))] * 12 + [
                Arg("None", lambda: None), tensor_arg(f"{name} (C+1,)", (c + 1,), pd),
                tensor_arg(f"{name} (1, C)", (1, c), pd), tensor_arg(f"{name} rg", (c,), pd,
                                                                        requires_grad=True),
                Arg("int 3", lambda: 3)]))

    rm, rv = param("running_mean", 0.0), param("running_var")
    w, b = param("weight"), param("bias")
    training = draw(st.sampled_from([True, False] * 4 + [1, 0, None, "yes", np.bool_(True),
                                                          torch.tensor(True)]))
    scalar_pool = lambda v: [Arg(repr(v), lambda: v)] * 16 + [  # noqa: E731
        Arg("tensor(v)", lambda: torch.tensor(v)), Arg("tensor([v])", lambda: torch.tensor([v])),
        Arg("None", lambda: None), Arg("'a'", lambda: "a"), Arg("int 1", lambda: 1),
        Arg("np.float32(v)", lambda: np.float32(v)), Arg("True", lambda: True),
        Arg("tensor(v, rg)", lambda: torch.tensor(v, requires_grad=True)),
        Arg("nan", lambda: math.nan), Arg("tensor(0.)", lambda: torch.tensor(0.0)),
        Arg("-1.0", lambda: -1.0), Arg("tensor(1e-50)", lambda: torch.tensor(1e-50))]
    momentum = draw(st.sampled_from(scalar_pool(0.3)))
    eps = draw(st.sampled_from(scalar_pool(1e-3)))
    return x, rm, rv, w, b, training, momentum, eps


def documented_difference(args: list, training) -> str | None:
    """Cases where bncourse.torch deliberately differs from torch (see ``batch_norm``'s docs)."""
    x = args[0]
    if not isinstance(x, torch.Tensor) and training:
        return "non-tensor input in training: TypeError (torch: AttributeError from .size())"
    if isinstance(x, torch.Tensor) and x.dim() < 2 and x.numel() > 0:
        return "rank < 2: ValueError expected at least 2D input"
    if isinstance(x, torch.Tensor) and x.dim() == 0 and training:
        return "rank < 2: ValueError expected at least 2D input"
    return None


def numpy_skip_reason(args: list, training, momentum, eps) -> str | None:
    """Argument cases the NumPy twin does not take, or answers differently by design (see
    ``bncourse.numpy._validate.validate_forward``)."""
    x, rm, rv, w, b = args
    if not isinstance(x, torch.Tensor) or x.dtype == torch.bfloat16:
        return "NumPy has no bfloat16, and its x is an array"
    if x.dim() < 2 or x.numel() == 0:
        return "rank < 2 / empty batch: NumPy validates (torch returns early or reads past the shape)"
    if any(isinstance(t, torch.Tensor) and (t.dim() != 1 or t.requires_grad) for t in args[1:]):
        return "NumPy requires 1-D parameters and has no requires_grad"
    if not all(type(v) in (float, int) for v in (momentum, eps)):
        return "NumPy takes Python numbers for momentum and eps"
    if isinstance(training, np.bool_):
        return "NumPy's path takes NumPy's bool for training (torch's parser does not)"
    return None


def run_numpy_arguments(args: list, training, momentum, eps, y_ref, err_ref, rm_ref, rv_ref,
                        where: str, scales: tuple) -> None:
    conv = [t.detach().numpy().copy() if isinstance(t, torch.Tensor) else t for t in args]
    x, rm, rv, w, b = conv
    out, err = attempt(lambda: bnp.batchnorm_forward(x, w, b, rm, rv, training=training,
                                                     momentum=momentum, eps=eps))
    if err_ref is not None and str(err_ref).startswith("batch_norm(): argument"):
        # the parser's messages name torch's positions; NumPy words its own: the type must agree
        if type(err) is not type(err_ref):
            raise Differ(f"bncourse.numpy {where}: {err!r} | torch {err_ref!r}")
        return
    check_errors(f"bncourse.numpy {where}", err, err_ref, numpy=True)
    if err_ref is None:
        dt = args[0].dtype
        check_close(f"bncourse.numpy y {where}", out[0], y_ref, dt, scales[0])
        for name, a, e in (("running_mean", rm, rm_ref), ("running_var", rv, rv_ref)):
            if isinstance(e, torch.Tensor):
                check_close(f"bncourse.numpy {name} {where}", a, e, e.dtype, scales[1][name],
                            param=True)



def run_argument_case(x, rm, rv, w, b, training, momentum, eps) -> tuple | None:
    """bncourse.torch against torch.nn; returns the scales of a successful call (for NumPy)."""
    def build():
        return [a.make() for a in (x, rm, rv, w, b, momentum, eps)]

    xr, rmr, rvr, wr, br, mr, er = build()
    y_ref, err_ref = attempt(lambda: F.batch_norm(xr, rmr, rvr, wr, br, training, mr, er))
    xo, rmo, rvo, wo, bo, mo, eo = build()
    y_ours, err_ours = attempt(lambda: bt.batch_norm(xo, rmo, rvo, wo, bo, training, mo, eo))
    where = f"batch_norm(x={x}, rm={rm}, rv={rv}, w={w}, b={b}, training={training!r}, " \
            f"momentum={momentum}, eps={eps})"
    reason = documented_difference([xr], training)
    if reason is not None:
        if err_ours is None or type(err_ours) not in (TypeError, ValueError):
            raise Differ(f"{where}: documented difference ({reason}) not raised: {err_ours!r}")
        return
    check_errors(f"bncourse.torch {where}", err_ours, err_ref)
    if err_ref is not None:
        return
    dt = xr.dtype
    x64 = _np64(xr)
    batch_stats = bool(training) or rmr is None
    if x64.size == 0:   # torch's early return: no statistics, parameters of any size
        scales = tol.Scales(*([np.zeros(1)] * 6))
    else:
        mean, var = _ref_stats(x64, batch_stats, type("R", (), {"running_mean": build()[1],
                                                                "running_var": build()[2]}),
                               float(er))
        scales = tol.condition_scales(x64, None, None if wr is None else _np64(wr).reshape(-1),
                                      mean, var, float(er), batch_stats)
    check_close(f"bncourse.torch y {where}", y_ours, y_ref, dt, scales.y if x64.size else 0.0)
    check_strides(f"bncourse.torch y {where}", y_ours, y_ref)
    stat_scales = {}
    for name, a, e, sc in (("running_mean", rmo, rmr, scales.running_mean),
                           ("running_var", rvo, rvr, scales.running_var)):
        if isinstance(e, torch.Tensor):
            stat_scales[name] = (sc.reshape(-1)[: e.numel()].reshape(e.shape)
                                 if np.size(sc) >= e.numel() else sc)
            check_close(f"bncourse.torch {name} {where}", a, e, e.dtype, stat_scales[name],
                        param=True)
    return scales.y if x64.size else 0.0, stat_scales


def run_argument_case_three_way(x, rm, rv, w, b, training, momentum, eps) -> None:
    """bncourse.torch against torch.nn, then bncourse.numpy where it takes the arguments."""
    case_scales = run_argument_case(x, rm, rv, w, b, training, momentum, eps)
    args = [a.make() for a in (x, rm, rv, w, b)]
    mom, ep = momentum.make(), eps.make()
    if numpy_skip_reason(args, training, mom, ep) is not None:
        return
    ref_args = [a.make() for a in (x, rm, rv, w, b)]
    y_ref, err_ref = attempt(lambda: F.batch_norm(ref_args[0], ref_args[1], ref_args[2],
                                                  ref_args[3], ref_args[4], training, mom, ep))
    if err_ref is None and case_scales is None:
        return   # a documented bncourse.torch difference returned early: nothing to scale by
    where = f"batch_norm(x={x}, rm={rm}, rv={rv}, w={w}, b={b}, training={training!r}, " \
            f"momentum={momentum}, eps={eps})"
    run_numpy_arguments(args, training, mom, ep, y_ref, err_ref, ref_args[1], ref_args[2], where,
                        case_scales or (None, {}))


@seed(20261132)
@FUZZ_SETTINGS
@given(args=argument_cases())
def test_fuzz_arguments(args):
    record("arguments", lambda: run_argument_case_three_way(*args))


# --- the rest of the family: LayerNorm, GroupNorm, InstanceNorm, RMSNorm (torch and NumPy) -------

FAMILY_EXAMPLES = int(os.environ.get("BNCOURSE_FUZZ_EXAMPLES", 30))
FAMILY_SETTINGS = settings(FUZZ_SETTINGS, max_examples=FAMILY_EXAMPLES)
NP_TYPES = {torch.float64: np.float64, torch.float32: np.float32}


@dataclass
class FamilyCase:
    layer: str                 # "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm"
    dtype: torch.dtype
    shape: tuple[int, ...]
    arg: int                   # LayerNorm / RMSNorm: axes normalized; GroupNorm: groups
    eps: float | None
    affine: bool
    bias: bool
    track: bool
    momentum: float | None
    trainings: tuple[bool, ...]
    layout: str
    special: str
    seed: int


def family_modules(case: FamilyCase):
    """(torch.nn module, bncourse.torch module, bncourse.numpy twin) of ``case``, dtype ``dtype``."""
    def build(lib, dtype):
        kw = {"dtype": dtype}
        if case.layer in ("LayerNorm", "RMSNorm"):
            shape = case.shape[len(case.shape) - case.arg:]
            if case.layer == "LayerNorm":
                return lib.LayerNorm(shape, case.eps, case.affine, bias=case.bias, **kw)
            return lib.RMSNorm(shape, case.eps, case.affine, **kw)
        if case.layer == "GroupNorm":
            return lib.GroupNorm(case.arg, case.shape[1], case.eps, case.affine, bias=case.bias, **kw)
        cls = getattr(lib, f"InstanceNorm{len(case.shape) - 2}d") if lib is not bnp else bnp.InstanceNorm
        return cls(case.shape[1], case.eps, case.momentum, case.affine, case.track, bias=case.bias, **kw)
    return build(torch.nn, case.dtype), build(bt, case.dtype), build(bnp, NP_TYPES[case.dtype]), \
        build(torch.nn, torch.float64)


def family_groups(case: FamilyCase, x64: np.ndarray) -> np.ndarray:
    """``x`` as ``(groups, values per group)``: the sets the layer's statistics pool over."""
    if x64.size == 0:
        return x64.reshape(0, 1)
    if case.layer in ("LayerNorm", "RMSNorm"):
        return x64.reshape(-1, math.prod(case.shape[len(case.shape) - case.arg:]))
    if case.layer == "GroupNorm":
        return x64.reshape(case.shape[0] * case.arg, -1)
    return x64.reshape(case.shape[0] * case.shape[1], -1)


def family_scales(case: FamilyCase, x64: np.ndarray, dy64: np.ndarray, w: np.ndarray | None,
                  eps: float, batch_stats: bool) -> dict[str, float]:
    """Whole-tensor condition scales (see ``tolerances``): the worst group decides."""
    g = family_groups(case, x64)
    g = g[np.isfinite(g).all(axis=1)] if g.size else g    # groups with inf / nan compare exactly
    with np.errstate(all="ignore"):
        if batch_stats:
            mean = g.mean(1) if case.layer != "RMSNorm" else 0.0
            var = ((g - np.reshape(mean, (-1, 1))) ** 2).mean(1) if g.shape[1] else np.ones(len(g))
        else:
            var = np.ones(len(g))
        amax = np.max(np.abs(g), axis=1, initial=0.0)
        invstd = 1.0 / np.sqrt(var + eps)
        cond = np.max(amax * invstd, initial=0.0)
        istd = np.max(invstd, initial=1.0)
        wmax = np.float64(1.0) if w is None else np.max(np.abs(w), initial=1.0)
        dymax = np.max(np.abs(dy64), initial=0.0)
        dysum = np.sum(np.abs(dy64))
        return {"y": wmax * (cond + 1.0), "dx": wmax * istd * dymax * (cond + 1.0) ** 2 * g.shape[1],
                "dweight": dysum * (cond + 1.0), "dbias": dysum}


def _family_state(m) -> dict[str, Any]:
    return {k: getattr(m, k, None) for k in ("running_mean", "running_var")}


def run_family_case(case: FamilyCase) -> None:
    try:
        _run_family_case(case)
    except Differ as exc:
        raise Differ(f"{exc} | {case}") from None


def _run_family_case(case: FamilyCase) -> None:
    rng = np.random.default_rng(case.seed)
    built = [attempt(lambda: family_modules(case))]
    (mods, err) = built[0]
    if err is not None:       # a constructor error: torch's, by type and text, in both
        ref_err = attempt(lambda: family_modules(case)[0])[1]
        raise Differ(f"constructing: {type(err).__name__}: {err} (torch: {ref_err})")
    ref, ours, twin, ref64 = mods
    with torch.no_grad():
        for name in ("weight", "bias"):
            p = getattr(ref, name, None)
            if p is not None:
                p.copy_(torch.from_numpy(rng.standard_normal(p.shape) + (name == "weight")))
        if getattr(ref, "running_mean", None) is not None:
            ref.running_mean.copy_(torch.from_numpy(rng.standard_normal(ref.running_mean.shape)))
            ref.running_var.copy_(torch.from_numpy(rng.random(ref.running_var.shape) + 0.5))
    state = ref.state_dict()
    ours.load_state_dict(state)
    ref64.load_state_dict(state)
    twin.load_state_dict({k: v.numpy() for k, v in state.items()})
    eps = case.eps if case.eps is not None else float(torch.finfo(case.dtype).eps)
    for k, training in enumerate(case.trainings, start=1):
        where = f"step {k} ({'train' if training else 'eval'})"
        for m in (ref, ours, twin, ref64):
            m.train(training)
        values = draw_values(case.shape, case.dtype, rng, case.special)
        x = in_layout(values, case.layout, rng).requires_grad_()
        dy = draw_values(case.shape, case.dtype, rng)
        x64 = _np64(x)
        y_ref, err_ref = attempt(lambda: ref(x))
        y_ours, err_ours = attempt(lambda: ours(x))
        check_errors(f"bncourse.torch {where}", err_ours, err_ref)
        x_np = x.detach().numpy().copy()
        with np.errstate(all="ignore"):
            y_np, err_np = attempt(lambda: twin(x_np))
        check_errors(f"bncourse.numpy {where}", err_np, err_ref, numpy=True)
        if err_ref is None:
            x64t = x.detach().to(torch.float64).contiguous().requires_grad_()
            y64 = ref64(x64t)
            leaves = [x] + [p for p in (ref.weight, getattr(ref, "bias", None)) if p is not None]
            our_leaves = [x] + [p for p in (ours.weight, getattr(ours, "bias", None)) if p is not None]
            leaves64 = [x64t] + [p for p in (ref64.weight, getattr(ref64, "bias", None)) if p is not None]
            names = ["dx"] + [nm for nm, p in (("dweight", ref.weight), ("dbias", getattr(ref, "bias", None)))
                              if p is not None]
            batch_stats = training or not getattr(ref, "track_running_stats", False)
            sc = family_scales(case, x64, _np64(dy), None if ref.weight is None else _np64(ref.weight),
                               eps, batch_stats)
            truth = {"y": y64, **dict(zip(names, torch.autograd.grad(y64, leaves64, dy.to(torch.float64))))}
            check_close(f"bncourse.torch y {where}", y_ours, y_ref, case.dtype, sc["y"], truth=truth["y"])
            check_strides(f"bncourse.torch y {where}", y_ours, y_ref)
            check_close(f"bncourse.numpy y {where}", y_np, y_ref, case.dtype, sc["y"], truth=truth["y"])
            g_ref = torch.autograd.grad(y_ref, leaves, dy)
            g_ours = torch.autograd.grad(y_ours, our_leaves, dy, allow_unused=True)
            for nm, a, e in zip(names, g_ours, g_ref):
                check_close(f"bncourse.torch {nm} {where}", a, e, case.dtype, sc[nm], param=nm != "dx",
                            truth=truth[nm])
            check_strides(f"bncourse.torch dx {where}", g_ours[0], g_ref[0])
            with np.errstate(all="ignore"):
                got = {"dx": twin.backward(dy.numpy()), "dweight": twin.grad_weight, "dbias": twin.grad_bias}
            for nm, e in zip(names, g_ref):
                check_close(f"bncourse.numpy {nm} {where}", got[nm], e, case.dtype, sc[nm],
                            param=nm != "dx", truth=truth[nm])
        for name, e in _family_state(ref).items():
            for label, m in (("bncourse.torch", ours), ("bncourse.numpy", twin)):
                a = getattr(m, name, None)
                if (a is None) != (e is None):
                    raise Differ(f"{label} {name} {where}: {a} vs torch's {e}")
                if e is not None:
                    check_close(f"{label} {name} {where}", a, e, case.dtype, 1.0, steps=k, param=True,
                                truth=getattr(ref64, name))


@st.composite
def family_cases(draw) -> FamilyCase:
    layer = draw(st.sampled_from(("LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm")))
    rank = draw(st.sampled_from((3, 4, 5) if layer == "InstanceNorm" else (2, 3, 4)))
    shape = draw(shapes(min_n=0))
    shape = shape[:rank] + (2,) * (rank - len(shape))
    if layer == "GroupNorm":
        arg = draw(st.sampled_from([g for g in range(1, shape[1] + 1) if shape[1] % g == 0]))
    elif layer in ("LayerNorm", "RMSNorm"):
        arg = draw(st.integers(1, min(2, rank - 1)))
    else:
        arg = 0
    affine = draw(st.booleans())
    dtype = draw(st.sampled_from((torch.float64, torch.float32)))
    # float64: not below ~1e-205, where torch's own gradient of a one-value group is nan
    # (invstd**3 overflows) and NumPy's compact formula gives the exact 0
    tiny = {torch.float64: 1e-200, torch.float32: 1e-50}[dtype]
    eps_choices = (1e-5, 1e-3, tiny, 1e10) + ((None,) if layer == "RMSNorm" else ())
    return FamilyCase(
        layer=layer, dtype=dtype, shape=shape, arg=arg, eps=draw(st.sampled_from(eps_choices)),
        affine=affine, bias=draw(st.booleans()) if affine else True,
        track=draw(st.booleans()), momentum=draw(st.sampled_from((0.1, None, 1.0))),
        trainings=tuple(draw(st.lists(st.booleans(), min_size=1, max_size=2))),
        layout=draw(st.sampled_from(("contiguous", "channels_last", "permuted", "stepped"))),
        special=draw(st.sampled_from(("none", "none", "inf", "nan", "mixed", "huge", "tiny",
                                      "constant", "offset"))),
        seed=draw(st.integers(0, 2 ** 32 - 1)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@seed(20261208)
@FAMILY_SETTINGS
@given(case=family_cases())
def test_fuzz_family(case):
    record("family", lambda: run_family_case(case))


# --- BatchRenorm as BatchNorm, SyncBatchNorm in one process, the Triton kernels --------------------

OTHER_EXAMPLES = int(os.environ.get("BNCOURSE_FUZZ_EXAMPLES", 20))
TRITON_EXAMPLES = int(os.environ.get("BNCOURSE_FUZZ_TRITON_EXAMPLES",
                                     os.environ.get("BNCOURSE_FUZZ_EXAMPLES", 6)))


@st.composite
def other_module_cases(draw, impl: str) -> ModuleCase:
    """A specials- or steps-class case for ``impl``, within what that layer takes."""
    case = draw(module_cases(draw(st.sampled_from(("specials", "steps", "layouts")))))
    case.impl = impl
    if impl == "renorm":                    # BatchRenorm1d/2d only; it always tracks
        case.track = True
        for st_ in case.steps:
            st_.flip_tracking = False
            if len(st_.shape) == 5:
                st_.shape = st_.shape[:4]
        case.steps = [s for s in case.steps if len(s.shape) == len(case.steps[0].shape)]
    if impl == "triton":                    # float32 and half input, float32 or matching parameters
        case.x_dtype, case.p_dtype = draw(st.sampled_from(DTYPE_PAIRS[1:]))
        case.double_backward = False
        case.steps = case.steps[:2]
    return case


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@seed(20261209)
@settings(FUZZ_SETTINGS, max_examples=OTHER_EXAMPLES)
@given(case=other_module_cases("renorm"))
def test_fuzz_batch_renorm_as_batchnorm(case):
    """BatchRenorm with r_max = 1, d_max = 0 is BatchNorm: against torch.nn.BatchNorm*d."""
    record("renorm", lambda: run_module_case(case))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@seed(20261210)
@settings(FUZZ_SETTINGS, max_examples=OTHER_EXAMPLES)
@given(case=other_module_cases("sync"))
def test_fuzz_sync_batchnorm_single_process(case):
    """SyncBatchNorm without a process group: against torch.nn.SyncBatchNorm (also BatchNorm there)."""
    record("sync", lambda: run_module_case(case))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@seed(20261211)
@settings(FUZZ_SETTINGS, max_examples=TRITON_EXAMPLES)
@given(case=other_module_cases("triton"))
def test_fuzz_triton_interpreted(case):
    """The Triton kernels (interpreted on CPU, or compiled on a GPU's tensors): against torch.nn."""
    if _triton_modules() is None:
        pytest.skip("triton is not installed")
    record("triton", lambda: run_module_case(case))


def _triton_modules():
    """bncourse.triton's modules, with Triton interpreted on CPU when there is no GPU (as in
    test_triton.py: Triton reads TRITON_INTERPRET when it is first imported)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        import bncourse.triton as btr
        from bncourse.triton import _kernels
    except ImportError:
        return None
    if not _kernels.INTERPRETED:
        return None                          # compiled: the kernels take CUDA tensors only
    return {2: btr.BatchNorm1d, 3: btr.BatchNorm1d, 4: btr.BatchNorm2d, 5: btr.BatchNorm3d}


def _summarise(path: str) -> None:
    counts: dict[str, list[int]] = {}
    examples: dict[str, str] = {}
    with open(path) as fh:
        for line in fh:
            v = json.loads(line)
            c = counts.setdefault(v["class"], [0, 0])
            c[0] += 1
            c[1] += v["differ"]
            if v["differ"]:
                examples.setdefault(v["class"], v["what"])
    for k, (n, d) in sorted(counts.items()):
        print(f"{k:10s} cases {n:5d}  differed {d:5d}")
        if k in examples:
            print(f"           e.g. {examples[k][:200]}")


if __name__ == "__main__":
    _summarise(sys.argv[1])
