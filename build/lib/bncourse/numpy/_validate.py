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

    torch's order: (python) batch-size-1 rule and eps rule, then (ATen) channel counts and
    evaluation-mode buffers, the both-or-neither rule for the buffers, dtypes. The NumPy path checks the
    array types and the rank first (torch fails on those with unrelated messages), and keeps every
    check for zero-size batches too (ATen skips its checks there; we prefer a clear error).
    """
    check_array(x, "x", optional=False)
    for name, value in (("weight", weight), ("bias", bias),
                        ("running_mean", running_mean), ("running_var", running_var)):
        check_array(value, name, optional=True)
    assert isinstance(x, np.ndarray)
    _checks.check_input_rank(x.ndim)
    _checks.check_enough_values(x.shape, training, torch_style=False)
    _checks.check_eps(eps, training)
    size = lambda v: None if v is None else v.size  # noqa: E731
    _checks.check_batch_norm_params(x.shape[1], training, size(running_mean), size(running_var),
                                    size(weight), size(bias))
    # in evaluation a missing buffer has already raised above, so only training can get here with one
    _checks.check_stats_pairing(running_mean is not None, running_var is not None)
    # torch's dtype rule compares the input with the first present of weight, bias, running_mean, running_var
    params = {"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var}
    for name, value in params.items():
        if value is not None and value.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D with {x.shape[1]} elements, got shape "
                + _checks.format_size(value.shape, torch_style=False)
            )
    _checks.check_dtypes(
        _dtype_name(x.dtype),
        [None if v is None else _dtype_name(v.dtype) for v in params.values()],
    )


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
