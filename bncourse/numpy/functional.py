"""BatchNorm in NumPy: the forward pass, the compact backward and the staged (chain-rule) backward.

Shapes: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``. Inside, every array is a table of shape
``(m, C)``: one column per channel, one row per sample and position (``m = N * prod(spatial)``
values enter each channel's mean), so that a per-channel statistic is a reduction over axis 0
and a ``(C,)`` parameter broadcasts along the rows, as in CS231n's ``(N, D)`` layers.

Conventions are PyTorch's (``torch.nn.functional.batch_norm``, torch 2.13)::

    y = (x - mean) / sqrt(var + eps) * weight + bias         # biased batch variance in training
    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)   # unbiased

Like CS231n's ``layers.py``, the forward returns ``(y, cache)`` and the backward consumes the
cache. Everything is computed in float64 and returned in the input's dtype (the parameter
gradients in the parameters'). ``BatchNorm`` runs a tuned version of the same computation
(``bncourse.numpy._fast``), with the same results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np

from bncourse.numpy._common import (check_forward, grad_output, param_dtype, param_grads,
                                    update_running_stats)

__all__ = [
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_staged",
]


def _to_table(a: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(m, C)`` float64, C-contiguous: channel ``c`` is column ``c``."""
    m = a.shape[0] * math.prod(a.shape[2:])
    return np.ascontiguousarray(np.moveaxis(a, 1, -1).reshape(m, a.shape[1]), dtype=np.float64)


def _from_table(t: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``(m, C)`` -> ``shape`` ``(N, C, *spatial)`` in ``dtype``, C-contiguous (undoes ``_to_table``)."""
    moved = t.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 1), dtype=dtype)


@dataclass
class BatchNormCache:
    """What the backward pass needs from the forward pass (float64 arrays)."""

    x_mu: np.ndarray               # (m, C) x - mean
    var: np.ndarray                # (C,) variance used to normalize: biased batch var or running_var
    invstd: np.ndarray             # (C,) 1 / sqrt(var + eps)
    eps: float
    weight: np.ndarray | None      # (C,) gamma, None without weight
    has_bias: bool
    training: bool                 # True: batch statistics, so the gradient flows through mean and var
    x_shape: tuple[int, ...]
    x_dtype: np.dtype
    weight_dtype: np.dtype         # dtype of dweight / dbias (the parameters' dtype)

    @property
    def m(self) -> int:
        """Number of values per channel, ``N * prod(spatial)``."""
        return self.x_mu.shape[0]

    @property
    def x_hat(self) -> np.ndarray:
        """The normalized input ``(x - mean) / sqrt(var + eps)``, ``x``'s shape (float64)."""
        return _from_table(self.x_mu * self.invstd, self.x_shape, np.dtype(np.float64))


def _batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of ``x`` ``(m, C)``: two ``(C,)`` arrays.

    Two passes (the mean, then the mean square of ``x - mean``), on ``x`` minus each channel's
    first value: a constant channel then has exactly its value as mean and variance 0, so it
    normalizes to exactly ``bias``. An empty batch has mean and variance 0 (they are unused).
    """
    if x.shape[0] == 0:
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    shift = np.where(np.isfinite(x[0]), x[0], 0.0)        # an infinite first value: no shift
    d = x - shift
    d_mean = d.mean(axis=0)
    var = ((d - d_mean) ** 2).mean(axis=0)
    return shift + d_mean, var


def batchnorm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    *,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
) -> tuple[np.ndarray, BatchNormCache]:
    """BatchNorm forward pass, the NumPy twin of ``torch.nn.functional.batch_norm``.

    Args:
        x: ``(N, C)`` or ``(N, C, *spatial)``, float16/32/64, any memory layout.
        weight, bias: ``(C,)`` (gamma and beta) or None.
        running_mean, running_var: ``(C,)`` buffers or both None. In training they are updated
            **in place** with the *unbiased* batch variance; in evaluation they normalize the input.
        training: True normalizes with the batch statistics (the biased variance), False with
            the running statistics (which must then be given).
        momentum: weight of the new batch statistic. ``None`` means a cumulative average: the
            factor is ``1 / num_batches_tracked`` after the increment, so it needs the counter.
        eps: added to the variance inside the square root; must be > 0 in training.
        num_batches_tracked: optional 0-d integer array, incremented **in place** on every
            training call that updates running buffers; required with ``momentum=None``.

    Returns:
        ``(y, cache)``: ``y`` has ``x``'s shape and dtype; ``cache`` feeds the backward functions.

    Raises:
        TypeError, ValueError, RuntimeError, NotImplementedError: with torch's wording (sizes
        written ``(1, 3)``), e.g. ``ValueError: Expected more than 1 value per channel when
        training, got input size (1, 3)``.

    A zero-size batch returns an empty output and leaves the running statistics unchanged (the
    counter is still incremented). ``inf`` / ``nan`` propagate as in torch: a channel holding them
    gives ``nan``; its running mean is ``±inf`` when its only specials are infinities of one sign.
    """
    check_forward(x, weight, bias, running_mean, running_var, training=training, momentum=momentum,
                  eps=eps, num_batches_tracked=num_batches_tracked)
    x64 = _to_table(x)                                        # (m, C)
    with np.errstate(invalid="ignore", over="ignore"):        # inf - inf is nan, silently
        if training:
            mean, var = _batch_moments(x64)                   # (C,), (C,)
            update_running_stats(running_mean, running_var, mean, var, x64.shape[0],
                                 momentum, num_batches_tracked)
        else:
            mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        x_mu = x64 - mean
        invstd = 1.0 / np.sqrt(var + eps)
        y = x_mu * invstd                                     # x_hat
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    cache = BatchNormCache(
        x_mu=x_mu, var=var, invstd=invstd, eps=float(eps),
        weight=None if weight is None else weight.astype(np.float64), has_bias=bias is not None,
        training=training, x_shape=tuple(x.shape), x_dtype=x.dtype,
        weight_dtype=param_dtype(weight, bias, x.dtype),
    )
    return _from_table(y, x.shape, x.dtype), cache


def batchnorm_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Compact BatchNorm backward.

    Args:
        dy: ``dL/dy``, the forward input's shape ``(N, C, *spatial)``.
        cache: from ``batchnorm_forward``.

    Returns:
        ``(dx, dweight, dbias)``: ``dx`` like ``x`` (shape and dtype); ``dweight``/``dbias``
        ``(C,)`` or None where the forward had no weight/bias.

    Training (per channel, sums over the ``m`` values of the channel)::

        dbias   = sum(dy)
        dweight = sum(dy * x_hat)
        dx      = weight * invstd / m * (m * dy - dbias - x_hat * dweight)

    i.e. ``dy`` scaled and then projected off span{1, x_hat}: ``sum(dx) = 0`` and
    ``sum(dx * x_hat) = 0``. Evaluation (constant statistics): ``dx = dy * weight * invstd``.
    """
    dy = _dy_table(dy, cache)                                  # (m, C)
    x_hat, m = cache.x_mu * cache.invstd, cache.m              # (m, C)
    dbias = dy.sum(axis=0)                                     # (C,)
    dweight = (dy * x_hat).sum(axis=0)                         # (C,)
    scale = cache.invstd if cache.weight is None else cache.weight * cache.invstd
    if cache.training and m > 0:
        dx = scale / m * (m * dy - dbias - x_hat * dweight)
    else:
        dx = dy * scale
    return (_from_table(dx, cache.x_shape, cache.x_dtype),) + param_grads(
        dweight, dbias, cache.weight is not None, cache.has_bias, cache.weight_dtype)


def _dy_table(dy: np.ndarray, cache: BatchNormCache) -> np.ndarray:
    """Check ``dy`` (the forward input's shape, floating) and view it as the ``(m, C)`` table."""
    return _to_table(grad_output(dy, cache.x_shape, np.dtype(np.float64)))


@overload
def batchnorm_backward_staged(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...


@overload
def batchnorm_backward_staged(
    dy: np.ndarray, cache: BatchNormCache, *, return_intermediates: bool
) -> (tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
      | tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, np.ndarray | None]]): ...


def batchnorm_backward_staged(dy, cache, *, return_intermediates=False):
    """BatchNorm backward, one step of the chain rule per line (Ioffe & Szegedy 2015, Sec. 3).

    The same result as ``batchnorm_backward``, written as the paper derives it, for reading;
    it materializes every intermediate.

    Args:
        dy: ``dL/dy``, shape ``(N, C, *spatial)``.
        cache: from ``batchnorm_forward``.
        return_intermediates: also return a dict of the intermediates: ``x_hat``, ``dxhat``
            (input shape), ``dvar``, ``dmean`` (``(C,)``; None in evaluation mode, where mean
            and variance are constants), ``dx`` (input shape), ``dgamma``, ``dbeta`` (``(C,)``).

    Returns:
        ``(dx, dweight, dbias)`` like ``batchnorm_backward`` (plus the dict if asked for).
    """
    dy = _dy_table(dy, cache)           # (m, C): sums over axis 0 are the paper's sums over i = 1..m
    m = max(cache.m, 1)                 # values per channel (an empty batch's sums are 0: keep 0/m = 0)
    gamma = 1.0 if cache.weight is None else cache.weight            # (C,) broadcasts along the rows
    x_mu = cache.x_mu                                                # x - mu
    var = cache.var                                                  # sigma^2
    std_inv = 1.0 / np.sqrt(var + cache.eps)                         # 1 / sqrt(sigma^2 + eps)
    x_hat = x_mu * std_inv                                           # the normalized input

    # dL/dx_hat = dL/dy * gamma
    dxhat = dy * gamma
    if cache.training:
        # dL/dsigma^2 = sum_i dL/dx_hat_i * (x_i - mu) * (-1/2) * (sigma^2 + eps)^(-3/2)
        dvar = np.sum(dxhat * x_mu, axis=0) * -0.5 * std_inv ** 3
        # dL/dmu = sum_i dL/dx_hat_i * (-1 / sqrt(sigma^2 + eps))  +  dL/dsigma^2 * sum_i -2 (x_i - mu) / m
        dmean = np.sum(dxhat * -std_inv, axis=0) + dvar * np.sum(-2.0 * x_mu, axis=0) / m
        # dL/dx_i = dL/dx_hat_i / sqrt(sigma^2 + eps) + dL/dsigma^2 * 2 (x_i - mu) / m + dL/dmu / m
        dx = dxhat * std_inv + dvar * 2.0 * x_mu / m + dmean / m
    else:
        # Evaluation: mu and sigma^2 are the running statistics, constants of the graph.
        dvar = dmean = None
        dx = dxhat * std_inv
    # dL/dgamma = sum_i dL/dy_i * x_hat_i
    dgamma = np.sum(dy * x_hat, axis=0)
    # dL/dbeta = sum_i dL/dy_i
    dbeta = np.sum(dy, axis=0)

    dx_out = _from_table(dx, cache.x_shape, cache.x_dtype)
    dweight, dbias = param_grads(dgamma, dbeta, cache.weight is not None, cache.has_bias,
                                 cache.weight_dtype)
    if not return_intermediates:
        return dx_out, dweight, dbias
    intermediates = {
        "x_hat": _from_table(x_hat, cache.x_shape, x_hat.dtype),
        "dxhat": _from_table(dxhat, cache.x_shape, dxhat.dtype),
        "dvar": dvar, "dmean": dmean, "dx": dx_out, "dgamma": dgamma, "dbeta": dbeta,
    }
    return dx_out, dweight, dbias, intermediates
