"""``batch_norm``: torch.nn.functional.batch_norm rebuilt from plain tensor ops.

The forward and the backward are a ``torch.autograd.Function`` written with ordinary tensor
operations (no ``torch.batch_norm`` / ``native_batch_norm`` anywhere), so the same code runs on CPU and
CUDA. Shapes: ``input`` is ``(N, C)`` or ``(N, C, *spatial)``; ``running_mean``, ``running_var``,
``weight``, ``bias`` are ``(C,)``.

Numerics
  * Training normalizes with the **biased** batch variance, stores the **unbiased** one in
    ``running_var``; ``running = (1 - momentum) * running + momentum * batch_stat``; ``eps`` inside
    the square root.
  * Statistics are a *corrected two-pass* (Chan, Golub & LeVeque): a pilot mean ``m0``, then
    ``xc = x - m0`` and ``var = mean(xc**2) - mean(xc)**2``, all in the compute dtype (float32, or
    float64 for float64 input): centring first is what keeps a float32 channel with offset 1e4 and
    std 1e-2 at its variance to ~1e-4 relative (no float64 needed, and none of the extra ops a
    float64 detour costs); a constant channel gives exactly ``bias``.
  * float16 / bfloat16 input is computed in float32 and returned in the input dtype (torch's
    mixed path when the parameters are float32).

Backward (compact formula, ``xhat = (x - mean) * invstd``, ``n = N * prod(spatial)``)::

    dbeta = sum(dy)            dgamma = sum(dy * xhat)
    train: dx = gamma * invstd / n * (n * dy - dbeta - xhat * dgamma)
    eval:  dx = dy * gamma * invstd

Double backward: when the backward itself runs with ``create_graph=True`` it is evaluated with
differentiable tensor ops recomputed from the saved input, so ``gradgradcheck`` passes.

Validation matches torch's exception types and messages (``bncourse._checks``), in torch's order,
with two deliberate differences: an input of rank < 2 that is not empty raises
``ValueError: expected at least 2D input (got 1D input)`` (torch reads past the shape: an
``IndexError`` or a meaningless ``running_mean should contain 0 elements not 3``), and a non-tensor
``input`` always raises ``TypeError`` (torch raises ``AttributeError`` in training).
"""
from __future__ import annotations

from numbers import Real
from typing import Optional

import torch
from torch import Tensor

from .. import _checks
from ._layout import Layout, channel_sum, ones_for

__all__ = ["batch_norm"]


def _dtype_name(t: Optional[Tensor]) -> Optional[str]:
    return None if t is None else str(t.dtype).removeprefix("torch.")


def _numel(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.numel()


def _check_arg_types(input, running_mean, running_var, weight, bias, momentum, eps) -> None:
    """``TypeError`` with the wording of ``torch.batch_norm``'s argument parser."""
    named = (("input", 1, input), ("weight", 2, weight), ("bias", 3, bias),
             ("running_mean", 4, running_mean), ("running_var", 5, running_var))
    for name, pos, value in named:
        if not isinstance(value, Tensor) and not (value is None and name != "input"):
            raise TypeError(f"batch_norm(): argument '{name}' (position {pos}) must be Tensor, "
                            f"not {type(value).__name__}")
    for name, pos, value in (("momentum", 7, momentum), ("eps", 8, eps)):
        if not isinstance(value, Real):
            raise TypeError(f"batch_norm(): argument '{name}' (position {pos}) must be float, "
                            f"not {type(value).__name__}")


def _check_devices(input: Tensor, *others: Optional[Tensor]) -> None:
    for t in others:
        if t is not None and t.device != input.device:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least "
                               f"two devices, {input.device} and {t.device}!")


def batch_norm(
    input: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over dim 1; same signature, results and errors as ``F.batch_norm``.

    ``input`` ``(N, C, *spatial)`` -> output of the same shape, dtype and memory format. In training the
    running buffers (if given) are updated in place. See the module docstring for the numerics.
    """
    _check_arg_types(input, running_mean, running_var, weight, bias, momentum, eps)
    if training:
        if input.dim() == 0:
            _checks.check_input_rank(0)
        _checks.check_enough_values(tuple(input.shape), True)
    _checks.check_eps(eps, training)

    if input.numel() == 0:
        # torch's early return (ATen _batch_norm_impl_index): no further checks, no buffer update;
        # a clone keeps the gradient chain, weight/bias enter through their first element only.
        out = input.clone()
        if weight is not None:
            out = out * weight.select(0, 0)
        if bias is not None:
            out = out + bias.select(0, 0)
        return out

    _checks.check_input_rank(input.dim())
    _checks.check_batch_norm_params(input.shape[1], training, _numel(running_mean),
                                    _numel(running_var), _numel(weight), _numel(bias))
    if torch.is_grad_enabled():
        for name, t in (("running_mean", running_mean), ("running_var", running_var)):
            if t is not None and t.requires_grad:
                raise RuntimeError(f"The function 'native_batch_norm' is not differentiable with "
                                   f"respect to argument '{name}'. This input cannot have "
                                   "requires_grad True.")
    if training:
        _checks.check_stats_pairing(running_mean is not None, running_var is not None)
    _checks.check_dtypes(_dtype_name(input),
                         [_dtype_name(t) for t in (weight, bias, running_mean, running_var)])
    for t in (running_mean, running_var):
        if t is not None:
            _checks.check_stats_ndim(t.dim())
    _check_devices(input, weight, bias, running_mean, running_var)
    return _BatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                    bool(training), float(momentum), float(eps))


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, without dispatching an op when it already has that dtype."""
    return t if t.dtype == dtype else t.to(dtype)


def _update_running(buffer: Tensor, batch_stat: Tensor, momentum: float) -> None:
    """``buffer = (1 - momentum) * buffer + momentum * batch_stat`` in place, rounded once.

    ``batch_stat`` has the statistics shape and the compute dtype; a float16/bfloat16 buffer is
    updated in the compute dtype.
    """
    target = buffer.view(batch_stat.shape)
    if buffer.dtype == batch_stat.dtype:
        target.lerp_(batch_stat, momentum)
    else:
        target.copy_(target.to(batch_stat.dtype).lerp_(batch_stat, momentum))


class _BatchNormFunction(torch.autograd.Function):
    """Forward: statistics + affine transform; backward: the compact formula.

    Both modes are written as ``xhat = (centered - m) * invstd``, ``y = xhat * weight + bias`` with
    per-channel ``m`` and ``invstd`` (statistics shape, see ``_layout``): in training
    ``centered = x - m0`` (the pilot mean) and ``m = mean - m0``; in evaluation ``centered = x`` and
    ``m = running_mean``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor],
                training: bool, momentum: float, eps: float) -> Tensor:
        layout = Layout.of(x)
        ct = _compute_dtype(x)
        n = layout.count
        xw = _cast(layout.to_work(x), ct)                        # (R, C) or (R, C, S)
        ones = ones_for(xw)
        w = None if weight is None else _cast(layout.per_channel(weight), ct)
        b = None if bias is None else _cast(layout.per_channel(bias), ct)

        if training:
            pilot = channel_sum(xw, ones).div_(n)                # m0, rounded to ct
            centered = xw - pilot                                # x - m0
            m = channel_sum(centered, ones).div_(n)              # mean - m0
            out = torch.mul(centered, centered)                  # reused for y below
            var = torch.addcmul(channel_sum(out, ones).div_(n), m, m, value=-1).clamp_min_(0.0)
            if running_mean is not None:                         # var is the biased variance
                _update_running(running_mean, pilot + m, momentum)
                # unbiased = var * n / (n - 1), as var + var / (n - 1): alpha costs no extra op
                _update_running(running_var, torch.add(var, var, alpha=1.0 / (n - 1)), momentum)
            invstd = var.add_(eps).rsqrt_()                      # var is not needed any more
        else:
            centered, out = xw, None
            m = _cast(layout.per_channel(running_mean), ct)
            invstd = _cast(layout.per_channel(running_var), ct).add(eps).rsqrt_()

        scale = invstd if w is None else invstd * w              # weight * invstd
        if b is None:                                            # y = centered * scale + offset
            offset = torch.mul(m, scale).neg_()
        else:
            offset = torch.addcmul(b, m, scale, value=-1)
        y = torch.addcmul(offset, centered, scale, out=out)

        ctx.layout, ctx.training, ctx.eps, ctx.ct, ctx.ones = layout, training, eps, ct, ones
        if bias is not None:
            ctx.bias_dtype, ctx.bias_shape = bias.dtype, bias.shape
        ctx.save_for_backward(x, weight, centered, m, invstd, scale)
        return layout.from_work(_cast(y, x.dtype))

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, centered, m, invstd, scale = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():   # create_graph=True: a differentiable backward
            dx, dw, db = _backward_differentiable(ctx, dy, x, weight, m, invstd)
        else:
            dx, dw, db = _backward_fast(ctx, dy, centered, m, invstd, scale, need_x, need_w)
        dw = _cast(dw, weight.dtype).view(weight.shape) if need_w else None
        db = _cast(db, ctx.bias_dtype).view(ctx.bias_shape) if need_b else None
        return (dx if need_x else None, dw, db, None, None, None, None, None)


def _backward_fast(ctx, dy, centered, m, invstd, scale, need_x: bool, need_w: bool):
    """The compact formula on the saved centred input; per-channel terms in the statistics shape.

    With ``k = weight * invstd`` (``scale``) and ``xhat = (centered - m) * invstd``, the training
    ``dx = k * dy - k / n * (dbeta + xhat * dgamma)`` is evaluated as
    ``k * dy + a * centered + c0``: ``a = -k * invstd * dgamma / n``, ``c0 = -k * dbeta / n - a * m``.
    """
    layout, ones = ctx.layout, ctx.ones
    n = layout.count
    dyw = _cast(layout.to_work(dy), ctx.ct)
    db = channel_sum(dyw, ones)                                  # dbeta = sum(dy)
    dot, tmp, dxw = None, None, None
    if ctx.training:
        if need_x or need_w:                                     # dgamma = sum(dy * xhat)
            tmp = torch.mul(dyw, centered)
            dot = torch.addcmul(channel_sum(tmp, ones), m, db, value=-1).mul_(invstd)
        if need_x:
            a = torch.mul(invstd, dot).mul_(scale).div_(-n)
            c0 = torch.mul(a, m).neg_().addcmul_(scale, db, value=-1.0 / n)
            dxw = torch.addcmul(c0, centered, a, out=tmp)
            dxw.addcmul_(dyw, scale)
    else:
        if need_w:
            tmp = (centered - m).mul_(dyw)
            dot = channel_sum(tmp, ones).mul_(invstd)
        if need_x:
            dxw = torch.mul(dyw, scale, out=tmp)
    dx = layout.from_work(_cast(dxw, dy.dtype)) if dxw is not None else None
    return dx, dot, db


def _backward_differentiable(ctx, dy, x, weight, m, invstd):
    """Same formula as :func:`_backward_fast`, recomputed from ``x`` with differentiable ops."""
    layout, ct = ctx.layout, ctx.ct
    n = layout.count
    xw = _cast(layout.to_work(x), ct)
    dyw = _cast(layout.to_work(dy), ct)
    dims = (0,) if layout.two_d else (0, 2)
    w = _cast(weight.reshape(layout.stat_shape), ct) if weight is not None else 1.0
    if ctx.training:
        mu = xw.mean(dim=dims, keepdim=True)
        var = (xw - mu).square().mean(dim=dims, keepdim=True)
        istd = (var + ctx.eps).rsqrt()
    else:
        mu, istd = m, invstd
    xhat = (xw - mu) * istd
    db = dyw.sum(dim=dims, keepdim=True)
    dw = (dyw * xhat).sum(dim=dims, keepdim=True)
    if ctx.training:
        dxw = w * istd / n * (n * dyw - db - xhat * dw)
    else:
        dxw = dyw * (w * istd)
    return layout.from_work(_cast(dxw, x.dtype)), dw, db
