"""What the plain and the tuned NumPy BatchNorm share: argument checks, the running-statistics
update, shapes and dtypes of the results.

Shapes: ``x`` is ``(N, C, *spatial)``, viewed as ``(N, C, S)`` with ``S = prod(spatial)``;
per-channel arrays are ``(C,)``.
"""
from __future__ import annotations

import math

import numpy as np

from bncourse._modes import average_factor
from bncourse.numpy import _validate

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def as_ncs(a: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, C, S)`` (a view when the memory layout allows it)."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


def compute_dtype(dtype: np.dtype, eps: float = 1e-5) -> np.dtype:
    """float16 is computed in float32 (like torch's CPU kernel); float32 and float64 as they are;
    float64 for any input when ``eps`` is below float32's normal range (1.2e-38), where a variance
    of that size underflows in float32 and ``1 / var`` overflows (torch accumulates in float64)."""
    if 0.0 < eps < _FLOAT32_TINY:
        return np.dtype(np.float64)
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def check_forward(
    x: object,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    *,
    training: bool,
    momentum: float | None,
    eps: float,
    num_batches_tracked: np.ndarray | None,
) -> None:
    """Every check of a forward call, in torch's order (see ``_validate.validate_forward``)."""
    _validate.validate_forward(x, weight, bias, running_mean, running_var, training=training, eps=eps)
    _validate.validate_num_batches_tracked(num_batches_tracked)
    if training and running_mean is not None and momentum is None and num_batches_tracked is None:
        raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked")


def update_running_stats(
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    mean: np.ndarray,
    var: np.ndarray,
    m: int,
    momentum: float | None,
    num_batches_tracked: np.ndarray | None,
) -> None:
    """Training: ``running = (1 - factor) * running + factor * batch_stat`` in place, with the
    unbiased variance ``var * m / (m - 1)``.

    ``mean``, ``var``: ``(C,)`` batch statistics (biased variance) of ``m`` values per channel.
    The counter is incremented first; ``factor`` is ``momentum``, or ``1 / num_batches_tracked``
    for ``momentum=None``. A zero-size batch (``m = 0``) leaves the buffers as they are.
    """
    if running_mean is None or running_var is None:
        return
    if num_batches_tracked is not None:
        num_batches_tracked += 1
    if m == 0:
        return
    factor = average_factor(momentum, num_batches_tracked)
    with np.errstate(over="ignore"):   # a variance beyond the buffer's dtype is inf, as in torch
        running_mean[...] = (1.0 - factor) * running_mean + factor * mean
        running_var[...] = (1.0 - factor) * running_var + factor * var * (m / (m - 1))


def grad_output(dy: object, x_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Check ``dy`` (the forward input's shape, floating) and view it as ``(N, C, S)`` in ``dtype``."""
    _validate.validate_grad_output(dy, x_shape)
    assert isinstance(dy, np.ndarray)
    return as_ncs(dy).astype(dtype, copy=False)


def param_grads(
    dweight: np.ndarray, dbias: np.ndarray, has_weight: bool, has_bias: bool, dtype: np.dtype
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(C,)`` gradients in the parameters' ``dtype``, None for an absent parameter."""
    return (dweight.astype(dtype) if has_weight else None,
            dbias.astype(dtype) if has_bias else None)


def param_dtype(weight: np.ndarray | None, bias: np.ndarray | None, x_dtype: np.dtype) -> np.dtype:
    """The dtype of ``dweight`` / ``dbias``: the parameters'."""
    return (weight if weight is not None else bias).dtype if (weight is not None or bias is not None) \
        else np.dtype(x_dtype)
