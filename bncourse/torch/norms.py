"""``LayerNorm``, ``GroupNorm``, ``InstanceNorm1d/2d/3d``, ``RMSNorm``: drop-in for ``torch.nn``'s.

Each is a thin ``torch.nn.Module`` over a functional of :mod:`bncourse.torch.norm_functional`, with
torch's constructor arguments (``device``/``dtype`` included), parameters, buffers, ``state_dict``
keys, ``extra_repr`` and error messages. Nothing of torch's native normalization is used.

Shapes: LayerNorm/RMSNorm ``(*, *normalized_shape)``; GroupNorm ``(N, C, *)``; InstanceNorm1d
``(N, C, L)`` or ``(C, L)``, 2d ``(N, C, H, W)`` or ``(C, H, W)``, 3d ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from .._norm_checks import as_normalized_shape, check_group_norm_ctor, check_num_features
from .modules import _BatchNorm
from .norm_functional import group_norm, instance_norm, layer_norm, rms_norm

__all__ = ["LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm"]


def _add_affine(module: Module, shape: int | tuple[int, ...], affine: bool, bias: bool, factory_kwargs: dict) -> None:
    """Register ``weight`` (ones) and ``bias`` (zeros) of ``shape``, as torch's norm layers do: ``None`` when
    ``affine`` is off, and no bias when ``bias`` is off. Filled by :func:`_reset_affine`."""
    module.register_parameter("weight", Parameter(torch.empty(shape, **factory_kwargs)) if affine else None)
    module.register_parameter("bias", Parameter(torch.empty(shape, **factory_kwargs)) if affine and bias else None)


def _reset_affine(module: Module) -> None:
    """``weight = 1`` and ``bias = 0`` where the module has them."""
    if module.weight is not None:
        init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)


class LayerNorm(Module):
    """Drop-in ``torch.nn.LayerNorm``: statistics per sample over the last ``len(normalized_shape)`` axes."""

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]
    normalized_shape: tuple[int, ...]
    eps: float
    elementwise_affine: bool

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.normalized_shape = as_normalized_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _add_affine(self, self.normalized_shape, elementwise_affine, bias, factory_kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return ("{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}, "
                "bias={use_bias}".format(**self.__dict__, use_bias=self.bias is not None))


class RMSNorm(Module):
    """Drop-in ``torch.nn.RMSNorm``: ``x / sqrt(mean(x**2) + eps) * weight`` over the last axes."""

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]
    normalized_shape: tuple[int, ...]
    eps: float | None
    elementwise_affine: bool

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.normalized_shape = as_normalized_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.register_parameter(
            "weight", Parameter(torch.empty(self.normalized_shape, **factory_kwargs)) if elementwise_affine else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}".format(
            **self.__dict__)


class GroupNorm(Module):
    """Drop-in ``torch.nn.GroupNorm``: statistics per sample over groups of channels and positions."""

    __constants__ = ["num_groups", "num_channels", "eps", "affine"]
    num_groups: int
    num_channels: int
    eps: float
    affine: bool

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        check_group_norm_ctor(num_groups, num_channels)
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _add_affine(self, num_channels, affine, bias, factory_kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return ("{num_groups}, {num_channels}, eps={eps}, affine={affine}, "
                "bias={use_bias}".format(**self.__dict__, use_bias=self.bias is not None))


class _InstanceNorm(_BatchNorm):
    """Common base of InstanceNorm1d/2d/3d (torch's ``_InstanceNorm``).

    Parameters and buffers are BatchNorm's (``_BatchNorm``, torch's ``_NormBase``), with torch's
    instance-norm defaults ``affine=False, track_running_stats=False``. With
    ``track_running_stats=True`` the running mean/variance average the per-instance statistics and
    normalize in evaluation; ``num_batches_tracked`` exists but is never incremented (as in torch),
    and ``momentum=None`` means no update at all (torch passes momentum 0).
    """

    _no_batch_dim = 0   # rank of an input without the batch axis

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None, dtype=None,
                 *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (self._no_batch_dim, self._no_batch_dim + 1):
            raise ValueError(f"expected {self._no_batch_dim}D or {self._no_batch_dim + 1}D input "
                             f"(got {input.dim()}D input)")

    def _apply_instance_norm(self, input: Tensor) -> Tensor:
        return instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training or not self.track_running_stats,
                             self.momentum if self.momentum is not None else 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Checkpoints from before torch 0.4 (no version) carry running stats that a module without
        # tracking does not have: torch reports them with this message and drops them.
        version = local_metadata.get("version", None)
        if version is None and not self.track_running_stats:
            keys = [prefix + k for k in ("running_mean", "running_var") if prefix + k in state_dict]
            if keys:
                error_msgs.append(
                    "Unexpected running stats buffer(s) {names} for {klass} "
                    "with track_running_stats=False. If state_dict is a "
                    "checkpoint saved before 0.4.0, this may be expected "
                    "because {klass} does not track running stats by default "
                    "since 0.4.0. Please remove these keys from state_dict. If "
                    "the running stats are actually needed, instead set "
                    "track_running_stats=True in {klass} to enable them. See "
                    "the documentation of {klass} for details.".format(
                        names=" and ".join(f'"{k}"' for k in keys), klass=self.__class__.__name__))
                for key in keys:
                    state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, input: Tensor) -> Tensor:
        """``(N, C, *spatial)`` or ``(C, *spatial)`` -> the same shape."""
        self._check_input_dim(input)
        feature_dim = input.dim() - self._no_batch_dim
        mismatch = check_num_features(feature_dim, input.size(feature_dim), self.num_features, self.affine)
        if mismatch:
            warnings.warn(mismatch, stacklevel=2)
        if input.dim() == self._no_batch_dim:
            return self._apply_instance_norm(input.unsqueeze(0)).squeeze(0)
        return self._apply_instance_norm(input)


class InstanceNorm1d(_InstanceNorm):
    """Drop-in ``torch.nn.InstanceNorm1d``: input ``(N, C, L)`` or ``(C, L)``."""

    _no_batch_dim = 2


class InstanceNorm2d(_InstanceNorm):
    """Drop-in ``torch.nn.InstanceNorm2d``: input ``(N, C, H, W)`` or ``(C, H, W)``."""

    _no_batch_dim = 3


class InstanceNorm3d(_InstanceNorm):
    """Drop-in ``torch.nn.InstanceNorm3d``: input ``(N, C, D, H, W)`` or ``(C, D, H, W)``."""

    _no_batch_dim = 4
