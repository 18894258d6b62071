"""Input checks of the NumPy BatchNorm, with torch's exception types and wording.

The rules themselves live in ``bncourse._checks`` (shared with the torch path); this module only
turns NumPy arrays into the plain values those checks take, and adds the checks that only make
sense for NumPy (is it an array at all? is it 1-D?).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from bncourse import _checks


_DTYPE_NAMES: Dict[np.dtype, str] = {}


def _dtype_name(dtype: np.dtype) -> str:
    """NumPy dtype -> the name ``_checks.check_dtypes`` expects ('float32', 'int64', 'object', ...).

    Memoised: ``dtype.name`` costs microseconds, which shows on small batches.
    """
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


def check_array(value: object, name: str, *, optional: bool) -> None:
    """``TypeError`` unless ``value`` is a ``numpy.ndarray`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, np.ndarray):
        kind = "a numpy.ndarray or None" if optional else "a numpy.ndarray"
        raise TypeError(
            f"{name} must be {kind}, got {type(value).__module__}.{type(value).__qualname__}"
            .replace("builtins.", "")
        )


def validate_forward(
    x: object,
    weight: Optional[np.ndarray],
    bias: Optional[np.ndarray],
    running_mean: Optional[np.ndarray],
    running_var: Optional[np.ndarray],
    *,
    training: bool,
    eps: float,
) -> None:
    """All checks of ``batchnorm_forward``, in the order torch makes them.

    torch's order (``bncourse._checks``): ``F.batch_norm``'s batch-size-1 and eps rules, then the
    argument parser's types of the parameters and of ``training`` (a bool; NumPy's ``np.bool_`` is
    accepted too, unlike torch), then ATen's checks. The NumPy path checks that ``x`` is an array of
    rank >= 2 first (torch fails on those with unrelated messages), requires 1-D parameters (torch
    accepts any shape with C elements for ``weight`` / ``bias``), and keeps every check for
    zero-size batches too (ATen skips its checks there; we prefer a clear error).
    """
    check_array(x, "x", optional=False)
    assert isinstance(x, np.ndarray)
    _checks.check_input_rank(x.ndim)
    _checks.check_python_rules(x.shape, training, eps, torch_style=False)
    # then the argument types, as torch's argument parser checks them after the two rules above
    for name, value in (("weight", weight), ("bias", bias),
                        ("running_mean", running_mean), ("running_var", running_var)):
        check_array(value, name, optional=True)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    _checks.check_batch_norm(describe(x), describe(running_mean), describe(running_var),
                             describe(weight), describe(bias), training=bool(training),
                             torch_style=False, one_dim_params=True)


def describe(a: Optional[np.ndarray]) -> Optional[_checks.Operand]:
    """An array as ``_checks`` sees it (None stays None)."""
    return None if a is None else _checks.Operand(a.shape, _dtype_name(a.dtype))


def validate_num_batches_tracked(num_batches_tracked: object) -> None:
    """The counter must be a 0-d integer array, so that it can be incremented in place."""
    if num_batches_tracked is None:
        return
    if not (isinstance(num_batches_tracked, np.ndarray) and num_batches_tracked.ndim == 0
            and np.issubdtype(num_batches_tracked.dtype, np.integer)):
        raise TypeError(
            "num_batches_tracked must be a 0-d integer numpy array (e.g. np.array(0, dtype=np.int64)) "
            f"so that it can be incremented in place, got {num_batches_tracked!r}"
        )


def validate_grad_output(dy: object, x_shape: Tuple[int, ...]) -> None:
    """``dy`` must be a floating array with the forward input's shape."""
    check_array(dy, "dy", optional=False)
    assert isinstance(dy, np.ndarray)
    if dy.shape != tuple(x_shape):
        raise ValueError(
            "dy must have the forward input's shape "
            + _checks.format_size(x_shape, torch_style=False)
            + ", got " + _checks.format_size(dy.shape, torch_style=False)
        )
    if _dtype_name(dy.dtype) not in _checks.FLOAT_DTYPES:
        _checks.check_dtypes(_dtype_name(dy.dtype), [])
