"""Compare a learner's result with the expected one and say precisely what differs.

:func:`compare` returns ``None`` when they agree, else one sentence naming the problem: wrong type (``None``,
list instead of array, torch tensor instead of NumPy array...), wrong length or keys, wrong shape, wrong dtype,
NaN/inf where the expected values are finite, or values out of tolerance with the largest error and where it is.
torch is never imported here; tensors are recognised by their type's module.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import markup


def _is_tensor(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach") and hasattr(x, "shape")


def describe(x: object) -> str:
    """A short description of a value's type (and shape/dtype for arrays)."""
    if x is None:
        return "None"
    if isinstance(x, np.ndarray):
        return f"a NumPy array of shape {tuple(x.shape)} and dtype {x.dtype}"
    if _is_tensor(x):
        return f"a torch.Tensor of shape {tuple(x.shape)} and dtype {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, np.generic):
        return f"a NumPy scalar of type {type(x).__name__}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"a {type(x).__name__}"


def _fmt(v: Any) -> str:
    try:
        return f"{v:.6g}"
    except (TypeError, ValueError):
        return repr(v)


def _index(flat: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return "()"
    return str(tuple(int(i) for i in np.unravel_index(flat, shape)))


def compare(expected: Any, got: Any, *, rtol: float, atol: float, check_dtype: bool = True,
            path: str = "your result") -> str | None:
    """``None`` if ``got`` matches ``expected`` (within ``rtol``/``atol`` for floats), else a message."""
    if got is None and expected is not None:
        return f"{path} is None: did you forget the `return` statement?"
    if isinstance(expected, np.ndarray) or _is_tensor(expected):
        return _compare_array(expected, got, rtol=rtol, atol=atol, check_dtype=check_dtype, path=path)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{path} is {describe(got)}, but a tuple of {len(expected)} values is expected."
        if len(got) != len(expected):
            return f"{path} has {len(got)} values, but {len(expected)} are expected."
        for i, (e, g) in enumerate(zip(expected, got)):
            msg = compare(e, g, rtol=rtol, atol=atol, check_dtype=check_dtype, path=f"{path}[{i}]")
            if msg:
                return msg
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{path} is {describe(got)}, but a dict with keys {sorted(map(str, expected))} is expected."
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            return (f"{path} has the wrong keys: missing {markup.literal(missing)}, unexpected "
                    f"{markup.literal(extra)}.")
        for k in expected:
            msg = compare(expected[k], got[k], rtol=rtol, atol=atol, check_dtype=check_dtype,
                          path=f"{path}[{markup.literal(repr(k))}]")
            if msg:
                return msg
        return None
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(got, (bool, np.bool_)):
            return f"{path} is {describe(got)}, but a bool is expected."
        return None if bool(got) == bool(expected) else f"{path} is {bool(got)}, but {bool(expected)} is expected."
    if isinstance(expected, numbers.Number):
        if isinstance(got, (bool, np.bool_)) or not (
                isinstance(got, numbers.Number) or (isinstance(got, np.ndarray) and got.ndim == 0)
                or (_is_tensor(got) and got.ndim == 0)):
            return f"{path} is {describe(got)}, but a number is expected."
        g = complex(got.item()) if hasattr(got, "item") else complex(got)
        e = complex(expected)
        if g != g:  # NaN
            return f"{path} is NaN, but the expected value is {_fmt(expected)}."
        if not np.isclose(g, e, rtol=rtol, atol=atol):
            gv = g.real if g.imag == 0 else g
            return (f"{path} is {_fmt(gv)}, but the expected value is {_fmt(expected)} "
                    f"(error {_fmt(abs(g - e))}; tolerance rtol={rtol:g}, atol={atol:g}).")
        return None
    try:
        equal = bool(got == expected)
    except Exception:
        equal = False
    if not equal:
        return (f"{path} is {markup.literal(repr(got)[:80])}, but {markup.literal(repr(expected)[:80])} "
                f"is expected.")
    return None


def _compare_array(expected: Any, got: Any, *, rtol: float, atol: float, check_dtype: bool, path: str) -> str | None:
    want_tensor = _is_tensor(expected)
    kind = "torch.Tensor" if want_tensor else "NumPy array (np.ndarray)"
    if _is_tensor(got) != want_tensor or not (isinstance(got, np.ndarray) or _is_tensor(got)):
        hint = ""
        if want_tensor and isinstance(got, np.ndarray):
            hint = " Convert with torch.from_numpy, or stay with torch operations."
        elif not want_tensor and _is_tensor(got):
            hint = " This exercise works in NumPy: use NumPy operations (or .numpy() on a tensor)."
        elif isinstance(got, (list, tuple)):
            hint = " Return an array, not a Python sequence (np.asarray converts one)."
        return (f"{path} is {describe(got)}, but a {kind} of shape {tuple(expected.shape)} is expected."
                + hint)
    e = expected.detach().cpu().numpy() if want_tensor else expected
    g = got.detach().cpu().numpy() if want_tensor else got
    if tuple(g.shape) != tuple(e.shape):
        hint = ""
        if g.ndim == e.ndim and tuple(g.shape) == tuple(e.shape)[::-1] and g.ndim > 1:
            hint = " It looks transposed."
        elif g.size < e.size:
            hint = " Did you reduce over the wrong axis, or forget keepdims=True before broadcasting?"
        return f"{path} has shape {tuple(g.shape)}, but the expected shape is {tuple(e.shape)}.{hint}"
    if check_dtype:
        gd = str(got.dtype).replace("torch.", "")
        ed = str(expected.dtype).replace("torch.", "")
        if gd != ed:
            return f"{path} has dtype {gd}, but the expected dtype is {ed}."
    if e.dtype == bool or g.dtype == bool or not (np.issubdtype(e.dtype, np.number) and np.issubdtype(g.dtype, np.number)):
        diff = np.flatnonzero(e != g)
        if diff.size:
            i = int(diff[0])
            return (f"{path} differs from the expected values at {diff.size} of {e.size} positions; first at index "
                    f"{_index(i, e.shape)}: expected {_fmt(e.flat[i])}, got {_fmt(g.flat[i])}.")
        return None
    e64 = e.astype(np.complex128 if np.iscomplexobj(e) else np.float64)
    g64 = g.astype(np.complex128 if np.iscomplexobj(g) else np.float64)
    bad = ~np.isfinite(g64) & np.isfinite(e64)
    if bad.any():
        nan = np.isnan(g64) & bad
        what = "NaN" if nan.any() else "inf"
        i = int(np.flatnonzero(bad)[0])
        return (f"{path} contains {what} at {int(bad.sum())} of {e.size} positions, first at index "
                f"{_index(i, e.shape)} where the expected value is {_fmt(e.flat[i])}. A division by zero, "
                f"or the square root or log of a negative number?")
    close = np.isclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        err = np.abs(g64 - e64)
        err = np.where(np.isnan(err), 0.0, err)
        i = int(np.argmax(np.where(close, -1.0, err)))
        return (f"{path} has the right shape but wrong values at {int((~close).sum())} of {e.size} positions. "
                f"The largest error |got - expected| = {_fmt(err.flat[i])} is at index {_index(i, e.shape)}, "
                f"where the expected value is {_fmt(e.flat[i])} and yours is {_fmt(g.flat[i])} "
                f"(tolerance: rtol={rtol:g}, atol={atol:g}).")
    return None
