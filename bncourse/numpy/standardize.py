"""The normalization family in NumPy: one standardize forward, one compact backward, four layers.

``standardize_forward(x, axes)`` computes ``x_hat = (x - mean) / sqrt(var + eps)`` with the mean and
the biased variance over ``axes``; ``standardize_backward(dx_hat, cache)`` is the compact backward.
The layers differ only in the axes (for ``x`` of shape ``(N, C, H, W)``)::

    BatchNorm     axes (0, 2, 3)        per channel, over the batch and the positions
    LayerNorm     axes (1, 2, 3)        per sample (the last len(normalized_shape) axes)
    InstanceNorm  axes (2, 3)           per sample and channel
    GroupNorm     axes (2,) of x.reshape(N, G, -1)   per sample and group of channels
    RMSNorm       like LayerNorm, center=False: x / sqrt(mean(x**2) + eps)

and then apply the same affine ``y = x_hat * weight + bias``. Like CS231n's ``layers.py``, forward
functions return ``(out, cache)`` and backward functions consume the cache.

Compact backward, with ``g = dL/dx_hat`` and means over ``axes``::

    statistics from x:   dx = invstd * (g - mean(g) - x_hat * mean(g * x_hat))
    RMS (center=False):  dx = invstd * (g - x_hat * mean(g * x_hat))
    given statistics:    dx = invstd * g
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bncourse import _checks
from bncourse._norm_checks import (as_normalized_shape, check_group_norm, check_group_norm_ctor,
                                   check_normalized_shape, check_num_features, check_spatial_size)

__all__ = [
    "StandardizeCache",
    "standardize_forward",
    "standardize_backward",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm",
    "RMSNorm",
]


@dataclass
class StandardizeCache:
    """What the backward needs (``x_hat``, ``invstd``), and the statistics used.

    ``mean``, ``var`` and ``invstd`` have ``x``'s shape with size 1 along ``axes`` (``mean`` is 0
    for ``center=False``; ``var`` is the biased variance, or the mean square).
    """

    x_hat: np.ndarray        # x's shape
    invstd: np.ndarray       # 1 / sqrt(var + eps)
    mean: np.ndarray | float
    var: np.ndarray
    axes: tuple[int, ...]
    center: bool
    batch_stats: bool        # False: the statistics were given (constants of the graph)


def standardize_forward(
    x: np.ndarray,
    axes: Sequence[int],
    eps: float = 1e-5,
    *,
    center: bool = True,
    mean: np.ndarray | None = None,
    var: np.ndarray | None = None,
) -> tuple[np.ndarray, StandardizeCache]:
    """``x_hat = (x - mean) / sqrt(var + eps)``, statistics over ``axes``.

    Args:
        x: any shape, float.
        axes: the axes the statistics pool over.
        eps: added to the variance.
        center: False for RMSNorm (no mean; ``var`` is the mean square).
        mean, var: given statistics broadcastable to ``x`` (running averages in evaluation);
            both or neither.

    Returns:
        ``(x_hat, cache)``; ``x_hat`` has ``x``'s shape, the cached statistics have ``x``'s shape
        with 1 along ``axes``: ``x`` ``(N, C, H, W)`` with axes ``(0, 2, 3)`` (BatchNorm) gives
        ``(1, C, 1, 1)``, with axes ``(1, 2, 3)`` (LayerNorm) ``(N, 1, 1, 1)``.
    """
    if (mean is None) != (var is None):
        raise ValueError("standardize_forward: give both mean and var, or neither")
    axes = tuple(a % x.ndim for a in axes)
    batch_stats = mean is None or var is None
    if batch_stats:
        xc, mean, var = _shifted_moments(x, axes, center)
    else:
        xc = x - mean if center else x
    with np.errstate(divide="ignore", invalid="ignore"):
        invstd = (1.0 / np.sqrt(var + eps)).astype(xc.dtype, copy=False)
        x_hat = xc * invstd
    return x_hat, StandardizeCache(x_hat, invstd, mean, var, axes, center, batch_stats)


def _shifted_moments(x: np.ndarray, axes: tuple[int, ...],
                     center: bool) -> tuple[np.ndarray, np.ndarray | float, np.ndarray]:
    """``(x - mean, mean, biased var)`` by the shifted two-pass of :mod:`bncourse.torch._moments`.

    A pilot mean ``m0``, ``centered = x - m0``, ``m = mean(centered)``: ``x - mean`` is taken as
    ``centered - m``, which keeps float32 data with a large offset and a small spread accurate. A
    variance that is not finite in float32 (inf / nan data, or squares that overflow: ``|x - mean|
    > 1.8e19``) is recomputed in float64. ``mean`` is ``m0 + m``, infinite where ``m0`` is (as
    torch's running mean); ``center=False`` gives RMSNorm's mean square and ``mean = 0``.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if center:
            pilot = x.mean(axis=axes, keepdims=True)
            centered = x - pilot
            m = centered.mean(axis=axes, keepdims=True)
            var = np.maximum((centered * centered).mean(axis=axes, keepdims=True) - m * m, 0.0)
            xc = centered - m
            mean = pilot + np.nan_to_num(m, nan=0.0, posinf=np.inf, neginf=-np.inf)
        else:
            xc, mean = x, 0.0
            var = (x * x).mean(axis=axes, keepdims=True)
        if x.dtype == np.float32 and not np.all(np.isfinite(var)):
            c64 = xc.astype(np.float64)
            var = (c64 * c64).mean(axis=axes, keepdims=True)
    return xc, mean, var


def standardize_backward(dx_hat: np.ndarray, cache: StandardizeCache) -> np.ndarray:
    """Compact backward of :func:`standardize_forward`: ``dL/dx_hat`` -> ``dL/dx`` (same shape)."""
    g, x_hat, axes = dx_hat, cache.x_hat, cache.axes
    if not cache.batch_stats:
        return cache.invstd * g
    proj = (g * x_hat).mean(axis=axes, keepdims=True)
    if cache.center:
        return cache.invstd * (g - g.mean(axis=axes, keepdims=True) - x_hat * proj)
    return cache.invstd * (g - x_hat * proj)


def _reduce_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``a`` down to ``shape`` (the inverse of broadcasting ``shape`` up to ``a.shape``)."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and a.shape[lead + i] != 1)
    return a.sum(axis=axes).reshape(shape) if axes else a.reshape(shape)


class _Standardized:
    """Base of the NumPy layers: ``forward`` = standardize over ``_axes`` + affine; ``backward``.

    float16 input is computed in float32 (as torch does); outputs and ``dx`` have the input's
    dtype, parameter gradients the parameters'.

    Subclasses set the parameters (``weight``/``bias`` or None) and say how an input is viewed
    (``_view``), over which axes of the view the statistics pool (``_axes``) and how the
    parameters broadcast against the input (``_param_shape``). After ``backward``, ``grad_weight``
    and ``grad_bias`` hold the parameter gradients (overwritten, not accumulated).
    """

    eps: float
    center: bool = True
    weight: np.ndarray | None
    bias: np.ndarray | None

    def __init__(self) -> None:
        self.training = True
        self.grad_weight: np.ndarray | None = None
        self.grad_bias: np.ndarray | None = None
        self._cache: tuple[StandardizeCache, tuple[int, ...]] | None = None

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # --- what differs between the layers -----------------------------------------------------
    def _view(self, x: np.ndarray) -> np.ndarray:
        return x

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        raise NotImplementedError

    def _param_shape(self, x: np.ndarray) -> tuple[int, ...]:
        raise NotImplementedError

    def _check(self, x: np.ndarray) -> None:
        """Raise torch's error for an input this layer cannot take."""

    def _given_stats(self, xv: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        return None, None

    def _after_forward(self, cache: StandardizeCache, xv: np.ndarray) -> None:
        pass

    # --- forward / backward ------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` -> ``y`` of the same shape (see the subclass for the accepted shapes)."""
        self._check(x)
        xv = self._view(x).astype(np.float32 if x.dtype == np.float16 else x.dtype, copy=False)
        mean, var = self._given_stats(xv)
        x_hat, cache = standardize_forward(xv, self._axes(xv), self._eps(x), center=self.center,
                                           mean=mean, var=var)
        self._after_forward(cache, xv)
        self._cache = (cache, x.shape)
        y = x_hat.reshape(x.shape)
        if self.weight is not None:
            y = y * self.weight.reshape(self._param_shape(x))
        if self.bias is not None:
            y = y + self.bias.reshape(self._param_shape(x))
        return y.astype(x.dtype, copy=False)

    __call__ = forward

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """``dL/dy`` of the last ``forward`` -> ``dL/dx``; sets ``grad_weight`` / ``grad_bias``."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        cache, x_shape = self._cache
        dy_dtype = dy.dtype
        dy = dy.astype(cache.x_hat.dtype, copy=False)           # float16 is computed in float32
        x_hat = cache.x_hat.reshape(x_shape)
        pshape = self._param_shape(x_hat)
        self.grad_bias = None if self.bias is None else \
            _reduce_to(dy, pshape).reshape(self.bias.shape).astype(self.bias.dtype, copy=False)
        if self.weight is not None:
            self.grad_weight = _reduce_to(dy * x_hat, pshape).reshape(self.weight.shape).astype(
                self.weight.dtype, copy=False)
            dy = dy * self.weight.reshape(pshape)
        else:
            self.grad_weight = None
        dx = standardize_backward(dy.reshape(cache.x_hat.shape), cache)
        return dx.reshape(x_shape).astype(dy_dtype, copy=False)

    def _eps(self, x: np.ndarray) -> float:
        return self.eps

    def state_dict(self) -> dict[str, np.ndarray]:
        """torch's keys and order (copies)."""
        return {k: np.array(v) for k, v in self._state().items() if v is not None}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        """Copy values into the existing arrays (cast to their dtype); keys must match torch's."""
        own = {k: v for k, v in self._state().items() if v is not None}
        if set(own) - {"num_batches_tracked"} - set(state_dict) or set(state_dict) - set(own):
            raise RuntimeError(f"state_dict keys {sorted(state_dict)} do not match {sorted(own)}")
        for k, v in state_dict.items():
            own[k][...] = np.asarray(v)

    def _state(self) -> dict[str, np.ndarray | None]:
        return {"weight": self.weight, "bias": self.bias}


def _shape(a: np.ndarray | None) -> tuple[int, ...] | None:
    return None if a is None else tuple(a.shape)


class LayerNorm(_Standardized):
    """``torch.nn.LayerNorm`` in NumPy: per sample, over the last ``len(normalized_shape)`` axes.

    ``x``: ``(*, *normalized_shape)``; ``weight``, ``bias``: ``normalized_shape``.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, *, dtype: type = np.float32) -> None:
        super().__init__()
        self.normalized_shape = as_normalized_shape(normalized_shape)
        self.eps = eps
        self.weight = np.ones(self.normalized_shape, dtype) if elementwise_affine else None
        self.bias = np.zeros(self.normalized_shape, dtype) if elementwise_affine and bias else None

    def _check(self, x: np.ndarray) -> None:
        check_normalized_shape(self.normalized_shape, x.shape, _shape(self.weight), _shape(self.bias),
                               rms=not self.center)

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(range(-len(self.normalized_shape), 0))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.weight is not None}"
                + ("" if not self.center else f", bias={self.bias is not None}") + ")")

    def _param_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return self.normalized_shape


class RMSNorm(LayerNorm):
    """``torch.nn.RMSNorm`` in NumPy: ``x / sqrt(mean(x**2) + eps) * weight`` over the last axes.

    ``eps=None`` is the machine epsilon of the input's dtype (float32 for float16 input).
    """

    center = False

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, *, dtype: type = np.float32) -> None:
        super().__init__(normalized_shape, 0.0, elementwise_affine, bias=False, dtype=dtype)
        self.eps = eps

    def _eps(self, x: np.ndarray) -> float:
        if self.eps is not None:
            return self.eps
        return float(np.finfo(np.float32 if x.dtype == np.float16 else x.dtype).eps)


class _PerChannel(_Standardized):
    """Layers with ``(C,)`` parameters on an ``(N, C, *spatial)`` input."""

    def _param_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return (x.shape[1],) + (1,) * (x.ndim - 2)

    def _init_params(self, num_channels: int, affine: bool, bias: bool, dtype: type) -> None:
        self.weight = np.ones(num_channels, dtype) if affine else None
        self.bias = np.zeros(num_channels, dtype) if affine and bias else None


class GroupNorm(_PerChannel):
    """``torch.nn.GroupNorm`` in NumPy: per sample, over groups of ``C / num_groups`` channels and
    all positions, i.e. standardize the ``(N, G, C / G * prod(spatial))`` view over axis 2."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 *, bias: bool = True, dtype: type = np.float32) -> None:
        super().__init__()
        check_group_norm_ctor(num_groups, num_channels)
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self._init_params(num_channels, affine, bias, dtype)

    def _check(self, x: np.ndarray) -> None:
        check_group_norm(x.shape, self.num_groups, _shape(self.weight), _shape(self.bias))

    def _view(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], self.num_groups, math.prod(x.shape[1:]) // self.num_groups)  # (N, G, C/G*S)

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (2,)

    def __repr__(self) -> str:
        return (f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.weight is not None}, bias={self.bias is not None})")


class InstanceNorm(_PerChannel):
    """``torch.nn.InstanceNorm1d/2d/3d`` in NumPy (with a batch axis): per sample and channel, over
    the positions of ``(N, C, *spatial)``.

    With ``track_running_stats`` the running mean/variance move (in training) towards the batch
    average of the per-instance mean and unbiased variance, and normalize in evaluation.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, *, bias: bool = True,
                 dtype: type = np.float32) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        self._init_params(num_features, affine, bias, dtype)
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self.num_batches_tracked = np.array(0, np.int64) if track_running_stats else None

    def _check(self, x: np.ndarray) -> None:
        _checks.check_input_rank(x.ndim)
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats:
            check_spatial_size(x.shape, torch_style=False)
        mismatch = check_num_features(1, x.shape[1], self.num_features, self.weight is not None)
        if mismatch:
            warnings.warn(mismatch, stacklevel=3)
        if self.track_running_stats:
            n = x.shape[0]    # torch counts the N * C channels of its (1, N * C, *spatial) view
            _checks.check_param_sizes(n * x.shape[1], running_mean=n * self.num_features)

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(range(2, x.ndim))

    def __repr__(self) -> str:
        return (f"InstanceNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats})")

    def _given_stats(self, xv):
        if self.training or not self.track_running_stats:
            return None, None
        shape = self._param_shape(xv)
        return self.running_mean.reshape(shape), self.running_var.reshape(shape)

    def _after_forward(self, cache: StandardizeCache, xv: np.ndarray) -> None:
        if not (self.training and self.track_running_stats) or xv.size == 0:
            return                    # a zero-size input is torch's early return: no update
        s = math.prod(xv.shape[2:])
        factor = 0.0 if self.momentum is None else self.momentum
        inst_mean = cache.mean.reshape(xv.shape[:2])              # (N, C) per-instance statistics
        inst_var = cache.var.reshape(xv.shape[:2])
        self.running_mean[...] = (1 - factor) * self.running_mean + factor * inst_mean.mean(0)
        self.running_var[...] = (1 - factor) * self.running_var + factor * inst_var.mean(0) * s / (s - 1)

    def _state(self):
        return {"weight": self.weight, "bias": self.bias, "running_mean": self.running_mean,
                "running_var": self.running_var, "num_batches_tracked": self.num_batches_tracked}
