"""One idea behind BatchNorm, LayerNorm, InstanceNorm, GroupNorm and RMSNorm: standardize over some axes.

:func:`~bncourse.torch.standardize` computes ``x_hat = (x - mean) / sqrt(var + eps)`` with the mean and
the (biased) variance taken over the given ``dims``; the layers differ only in those dims (for an input
of shape ``(N, C, H, W)``):

=============  ===========================================  ==================================
layer          statistics pooled over                       ``standardize`` call
=============  ===========================================  ==================================
BatchNorm      the batch and the positions, per channel     dims ``(0, 2, 3)``
LayerNorm      the last ``len(normalized_shape)`` axes      dims ``(-3, -2, -1)``
InstanceNorm   the positions, per sample and channel        dims ``(2, 3)``
GroupNorm      a group of channels and the positions        view ``(N, G, C/G*H*W)``, dims ``(2,)``
RMSNorm        like LayerNorm, without centring             dims ``(-1,)``, ``center=False``
=============  ===========================================  ==================================

The functionals here (:func:`~bncourse.torch.layer_norm`, :func:`~bncourse.torch.group_norm`,
:func:`~bncourse.torch.instance_norm`, :func:`~bncourse.torch.rms_norm`) have
``torch.nn.functional``'s signatures, results and error messages (torch 2.13, CPU wording). They are
written with plain differentiable tensor ops, so autograd supplies the backward and the double backward.
float16/bfloat16 input is computed in float32 and returned in the input dtype.
"""
from __future__ import annotations

import math
from numbers import Integral
from typing import Sequence

import torch
from torch import Tensor

from .. import _checks
from .._norm_checks import check_group_norm, check_normalized_shape, check_spatial_size
from ._moments import shifted_moments, update_running

__all__ = ["standardize", "layer_norm", "group_norm", "instance_norm", "rms_norm"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 are computed in float32 (torch's accumulate type); others as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def standardize(
    x: Tensor,
    dims: Sequence[int],
    eps: float,
    *,
    center: bool = True,
    mean: Tensor | None = None,
    var: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Standardize ``x`` over ``dims``: the forward shared by the whole normalization family.

    Args:
        x: any shape, floating point (computed as it is: cast before calling for float16).
        dims: the axes the statistics pool over.
        eps: added to the variance inside the square root.
        center: False for RMSNorm: ``mean`` is 0 and ``var`` is the mean square ``mean(x**2)``.
        mean, var: given statistics (e.g. running averages in evaluation), broadcastable to ``x``;
            both or neither. They are used as they are instead of being computed from ``x``.

    Returns:
        ``(x_hat, mean, var)``: ``x_hat`` has ``x``'s shape; ``mean`` and ``var`` have ``x``'s
        shape with size 1 along ``dims`` (the statistics actually used; ``var`` biased, in
        float64 where float32 squares overflow).

    The statistics are the shared shifted moments (``bncourse.torch._moments``): accurate for
    float32 data with a large offset and a small spread, and a float64 variance (CPU) where float32
    squares overflow.
    """
    if (mean is None) != (var is None):
        raise ValueError("standardize: give both mean and var, or neither")
    if mean is None or var is None:
        dims = tuple(dims)
        stats = shifted_moments(x, lambda t: t.mean(dim=dims, keepdim=True), center=center)
        var = stats.var
        if 0.0 < eps < _FLOAT64_EPS.get(var.dtype, 0.0):
            # eps would round away, or invstd**3 (in the gradient) overflow: invstd in float64
            var = var.to(torch.float64)
        invstd = torch.rsqrt(var + eps)
        if invstd.dtype != x.dtype:                    # float64: overflowing squares or a tiny eps
            invstd = invstd.to(x.dtype)
        # (x - m0) - (mean - m0): the offset m0 leaves exactly, before the small mean is taken off
        x_hat = (stats.centered - stats.m if center else stats.centered) * invstd
        return x_hat, stats.mean(), stats.var
    xc = x - mean if center else x
    return xc * torch.rsqrt(var + eps), mean, var


# eps below which float32 statistics take their invstd in float64: there ``1 / sqrt(eps)**3``, which
# the gradient of a constant group multiplies, overflows float32 (and below 1.2e-38 eps rounds away)
_FLOAT64_EPS = {torch.float32: 1e-25}


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``x_hat * weight + bias`` (each optional; already shaped to broadcast)."""
    if weight is not None and bias is not None:
        return torch.addcmul(bias, x_hat, weight)       # one fused op (forward and backward)
    y = x_hat if weight is None else x_hat * weight
    return y if bias is None else y + bias


def _shape(t: Tensor | None) -> tuple[int, ...] | None:
    return None if t is None else tuple(t.shape)


def _dtype_name(t: Tensor | None) -> str | None:
    return None if t is None else str(t.dtype).removeprefix("torch.")


def _check_tensor(fn: str, name: str, pos: int, value: object, optional: bool = True) -> None:
    if not isinstance(value, Tensor) and not (optional and value is None):
        raise TypeError(f"{fn}(): argument '{name}' (position {pos}) must be Tensor, "
                        f"not {type(value).__name__}")


def _check_float(fn: str, name: str, pos: int, value: object, optional: bool = False) -> None:
    """The argument parser's ``TypeError`` for a ``float`` argument (``float?`` when ``optional``)."""
    from .functional import _is_parser_float, _type_name
    if not _is_parser_float(value) and not (optional and value is None):
        raise TypeError(f"{fn}(): argument '{name}' (position {pos}) must be float, not {_type_name(value)}")


def _check_kernel_dtypes(kernel: str, input: Tensor, *params: Tensor | None) -> None:
    """The CPU kernels' dtype rules of layer_norm/group_norm (probed on torch 2.13).

    Parameters must have the input's dtype, or be float32 with float16/bfloat16 input ("mixed");
    an integer/bool/complex input raises ``NotImplementedError: "<kernel>" not implemented for 'Long'``
    when no parameter is given (with parameters, the mixed-dtype message comes first).
    """
    x = _dtype_name(input)
    present = [_dtype_name(p) for p in params if p is not None]
    if x not in _checks.FLOAT_DTYPES and not present:
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{_checks.torch_type_name(x)}'")
    if x not in _checks.FLOAT_DTYPES:
        if any(d != "float32" for d in present):
            raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of Float")
        raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")
    _checks.check_dtypes(x, [_dtype_name(p) for p in params])


def _normalized_shape(fn: str, normalized_shape: object) -> tuple[int, ...]:
    if isinstance(normalized_shape, Integral) or not isinstance(normalized_shape, (tuple, list, torch.Size)):
        raise TypeError(f"{fn}(): argument 'normalized_shape' (position 2) must be tuple of ints, "
                        f"not {type(normalized_shape).__name__}")
    return tuple(int(s) for s in normalized_shape)


def layer_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Same signature, results and errors as ``torch.nn.functional.layer_norm``.

    ``input`` ``(*, *normalized_shape)``; ``weight``, ``bias`` ``normalized_shape``. Statistics per
    sample over the last ``len(normalized_shape)`` axes.
    """
    _check_tensor("layer_norm", "input", 1, input, optional=False)
    shape = _normalized_shape("layer_norm", normalized_shape)
    _check_tensor("layer_norm", "weight", 3, weight)
    _check_tensor("layer_norm", "bias", 4, bias)
    _check_float("layer_norm", "eps", 5, eps)
    check_normalized_shape(shape, tuple(input.shape), _shape(weight), _shape(bias))
    _check_kernel_dtypes("LayerNormKernelImpl", input, weight, bias)
    ct = _compute_dtype(input.dtype)
    dims = tuple(range(-len(shape), 0))
    x_hat, _, _ = standardize(input.to(ct), dims, eps)
    return _affine(x_hat, _cast(weight, ct), _cast(bias, ct)).to(input.dtype).contiguous()  # as torch's


def rms_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    """Same signature, results and errors as ``torch.nn.functional.rms_norm``.

    ``y = x / sqrt(mean(x**2) + eps) * weight`` over the last ``len(normalized_shape)`` axes;
    ``eps=None`` is the machine epsilon of the compute dtype (float32 for float16/bfloat16 input).
    The output has the input's dtype whatever the weight's.
    """
    _check_tensor("rms_norm", "input", 1, input, optional=False)
    shape = _normalized_shape("rms_norm", normalized_shape)
    _check_tensor("rms_norm", "weight", 3, weight)
    _check_float("rms_norm", "eps", 4, eps, optional=True)
    check_normalized_shape(shape, tuple(input.shape), _shape(weight), rms=True)
    if _dtype_name(input) not in _checks.FLOAT_DTYPES:
        raise NotImplementedError(
            f"\"rms_norm\" not implemented for '{_checks.torch_type_name(_dtype_name(input))}'")
    ct = _compute_dtype(input.dtype)
    eps = torch.finfo(ct).eps if eps is None else eps
    dims = tuple(range(-len(shape), 0))
    x_hat, _, _ = standardize(input.to(ct), dims, eps, center=False)
    y = _affine(x_hat, _cast(weight, ct), None).to(input.dtype)
    return y.contiguous(memory_format=_memory_format(input))   # torch keeps channels_last only


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Same signature, results and errors as ``torch.nn.functional.group_norm``.

    ``input`` ``(N, C, *spatial)``; ``weight``, ``bias`` ``(C,)``. Statistics per sample over
    each group of ``C / num_groups`` channels and all positions: :func:`~bncourse.torch.standardize`
    over the last axis of the ``(N, num_groups, C / num_groups * prod(spatial))`` view.
    """
    _check_tensor("group_norm", "input", 1, input, optional=False)
    _check_tensor("group_norm", "weight", 3, weight)
    _check_tensor("group_norm", "bias", 4, bias)
    _check_float("group_norm", "eps", 5, eps)
    check_group_norm(tuple(input.shape), num_groups, _shape(weight), _shape(bias))
    n, c = input.shape[:2]
    _check_kernel_dtypes("GroupNormKernelImpl", input, weight, bias)
    ct = _compute_dtype(input.dtype)
    fmt = _memory_format(input)
    if fmt != torch.contiguous_format and input.requires_grad:
        input = _GradIn.apply(input, fmt)                        # dx in the input's format, as torch's
    grouped = input.to(ct).reshape(n, num_groups, math.prod(input.shape[1:]) // num_groups)  # (N, G, C/G*S)
    x_hat = standardize(grouped, (2,), eps)[0].reshape(input.shape)
    per_channel = (c,) + (1,) * (input.dim() - 2)               # (C, 1, ..., 1) broadcasts
    y = _affine(x_hat, _cast(weight, ct, per_channel), _cast(bias, ct, per_channel)).to(input.dtype)
    return y.contiguous(memory_format=fmt)                      # torch keeps channels_last here


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Same signature, results and errors as ``torch.nn.functional.instance_norm``.

    ``input`` ``(N, C, *spatial)``; the others ``(C,)``. With ``use_input_stats`` every (sample,
    channel) is standardized over its positions, and the running buffers (if given) move towards the
    batch average of the per-instance mean and *unbiased* variance, in place:
    ``running = (1 - momentum) * running + momentum * mean_over_N(stat)``. Otherwise the running
    statistics normalize (evaluation).
    """
    _check_tensor("instance_norm", "input", 1, input, optional=False)
    if use_input_stats:
        check_spatial_size(tuple(input.shape))
    for name, pos, value in (("weight", 2, weight), ("bias", 3, bias), ("running_mean", 4, running_mean),
                             ("running_var", 5, running_var)):
        _check_tensor("instance_norm", name, pos, value)
    if not isinstance(use_input_stats, bool):
        from .functional import _type_name
        raise TypeError("instance_norm(): argument 'use_input_stats' (position 6) must be bool, "
                        f"not {_type_name(use_input_stats)}")
    _check_float("instance_norm", "momentum", 7, momentum)
    _check_float("instance_norm", "eps", 8, eps)
    if not use_input_stats and (running_mean is None or running_var is None):
        raise RuntimeError("Expected running_mean and running_var to be defined when "
                           "use_input_stats is false")
    # torch runs batch_norm on the (1, N * C, *spatial) view with every per-channel tensor repeated
    # N times (Tensor.repeat: at most 1-D), so its checks and messages count N * C channels
    for t in (weight, bias, running_mean, running_var):
        if t is not None and t.dim() > 1:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                               "dimensions of tensor")
    if input.numel() == 0:
        # torch's early return: an empty output through which weight and bias get zero gradients
        out = input.clone(memory_format=torch.contiguous_format)
        if weight is not None:
            out = out * weight.sum()
        if bias is not None:
            out = out + bias.sum()
        return out
    n, c = input.shape[:2]
    numel = lambda t: None if t is None else t.numel() * n  # noqa: E731
    _checks.check_batch_norm_params(n * c, use_input_stats, numel(running_mean), numel(running_var),
                                    numel(weight), numel(bias))
    if torch.is_grad_enabled():
        _checks.check_buffers_grad(running_mean is not None and running_mean.requires_grad,
                                   running_var is not None and running_var.requires_grad)
    if use_input_stats:
        _checks.check_stats_pairing(running_mean is not None, running_var is not None)
    _checks.check_dtypes(_dtype_name(input), [_dtype_name(weight), _dtype_name(bias)])
    momentum, eps = float(momentum), float(eps)
    ct = _compute_dtype(input.dtype)
    x = input.to(ct)
    dims = tuple(range(2, input.dim()))
    per_channel = (c,) + (1,) * (input.dim() - 2)
    if use_input_stats:
        x_hat, mean, var = standardize(x, dims, eps)
        if running_mean is not None and running_var is not None:
            spatial = math.prod(input.shape[2:])
            update_running(running_mean, mean.detach().mean(0).reshape(c), momentum)
            update_running(running_var, var.detach().mean(0).reshape(c) * (spatial / (spatial - 1)),
                           momentum)
    else:
        x_hat = standardize(x, dims, eps, mean=_cast(running_mean, ct, per_channel),
                            var=_cast(running_var, ct, per_channel))[0]
    y = _affine(x_hat, _cast(weight, ct, per_channel), _cast(bias, ct, per_channel))
    return y.to(input.dtype).contiguous()                      # as torch's, whatever the input's layout


class _GradIn(torch.autograd.Function):
    """Identity whose backward returns the gradient in a given memory format (torch's GroupNorm
    gives ``dx`` the input's channels_last format)."""

    @staticmethod
    def forward(ctx, x: Tensor, fmt: torch.memory_format) -> Tensor:
        ctx.fmt = fmt
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return dy.contiguous(memory_format=ctx.fmt), None


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last (3d) for such 4-D (5-D) tensors, else contiguous."""
    for ndim, fmt in ((4, torch.channels_last), (5, torch.channels_last_3d)):
        if x.dim() == ndim and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
            return fmt
    return torch.contiguous_format


def _cast(t: Tensor | None, dtype: torch.dtype, shape: Sequence[int] | None = None) -> Tensor | None:
    """``t`` in ``dtype`` (and viewed as ``shape``); ``None`` stays ``None``."""
    if t is None:
        return None
    t = t if t.dtype == dtype else t.to(dtype)
    return t if shape is None else t.reshape(shape)
