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
  * IEEE specials propagate as in torch: ``inf`` / ``nan`` in a channel make its output, gradients
    and running statistics ``nan`` (a running mean becomes ``±inf`` when the channel's only
    specials are infinities of one sign, as torch's); huge float32 values whose squares overflow
    get their variance in float64 (on CPU only: the check would stall a GPU's queue); an ``eps`` below float32's
    normal range (1.2e-38) switches the whole computation to float64, so it is not rounded away.

Memory layout: any strided input torch accepts (transposed / permuted views, stepped slices,
expanded stride-0 tensors, channels_last / channels_last_3d) and any ``dy``; the output and the
input gradient get torch's memory format (``_layout.suggest_memory_format``).

Backward (compact formula, ``xhat = (x - mean) * invstd``, ``n = N * prod(spatial)``)::

    dbeta = sum(dy)            dgamma = sum(dy * xhat)
    train: dx = gamma * invstd / n * (n * dy - dbeta - xhat * dgamma)
    eval:  dx = dy * gamma * invstd

Double backward: when the backward itself runs with ``create_graph=True`` it is evaluated with
differentiable tensor ops recomputed from the saved input, so ``gradgradcheck`` passes.

Validation matches torch's exception types and messages (``bncourse._checks``), in torch's order:
``F.batch_norm``'s own checks on the raw arguments (one value per channel, the ``eps`` rules),
then its argument parser's types in positional order (``training`` must be a ``bool``;
``momentum`` / ``eps`` may be Python or NumPy numbers or 0-d tensors that do not require grad),
then ATen's checks (sizes, evaluation-mode buffers, buffers' ``requires_grad``, both-or-neither
buffers, mixed dtypes, the buffers' rank, same dtypes, devices).

Differences from torch, deliberate (torch's result is wrong or meaningless there):

* a constant channel gives exactly ``bias`` (torch: ``bias`` plus the rounding error of its mean
  times ``weight / sqrt(eps)``, which can be large for a small ``eps``);
* an input of rank < 2 that is not empty raises ``ValueError: expected at least 2D input (got 1D
  input)`` (torch reads past the shape: an ``IndexError`` or a meaningless ``running_mean should
  contain 0 elements not 3``), and a non-tensor ``input`` in training raises the parser's
  ``TypeError`` (torch: ``AttributeError`` from ``input.size()``);
* float16 / bfloat16 results keep float32 accuracy where torch's half-precision kernels round
  intermediate values (differences of several half-precision ulps);
* float32 values whose squares overflow (``|x - mean| > 1.8e19``) are normalised correctly
  (torch's float32 kernel returns 0: its variance overflows to ``inf``);
* an ``eps`` below float32's range is honoured (torch's float32 kernel rounds it away: in
  evaluation a zero ``running_var`` gives ``inf``, in training its gradients can be off by tens of
  percent for data of that scale);
* a ``channels_last`` input that is dense in that order only through its size-1 dimensions, e.g.
  ``(1, 4, 2, 1, 1)`` with strides ``(1, 1, 4, 8, 4)``, with a contiguous ``dy``: torch 2.13's CPU
  backward reads ``dy`` in the wrong order (its ``dx`` is permuted); ours is correct.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .. import _checks
from ._layout import Layout, channel_sum, ones_for
from ._moments import Moments, shifted_moments, update_running

__all__ = ["batch_norm", "check_batch_norm_args"]


def _dtype_name(t: Optional[Tensor]) -> Optional[str]:
    return None if t is None else str(t.dtype).removeprefix("torch.")


def _type_name(value: object) -> str:
    """The type name torch's argument parser prints (CPython's ``tp_name``): ``int``, ``Tensor``,
    ``numpy.bool``, ``decimal.Decimal``."""
    t = type(value)
    if t.__module__ == "builtins" or t.__flags__ & (1 << 9):   # Py_TPFLAGS_HEAPTYPE: a Python class
        return t.__name__
    return f"{t.__module__}.{t.__qualname__}"


def _is_parser_float(value: object) -> bool:
    """What ``torch.batch_norm``'s parser takes for a ``float`` argument: a Python or NumPy number,
    or a 0-d tensor that does not require grad."""
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.requires_grad
    return isinstance(value, (int, float, np.number, np.bool_))


def _as_float(value: object) -> float:
    """A parser ``float`` argument as a Python float, with the parser's conversion errors."""
    if isinstance(value, Tensor):
        if value.is_complex():
            raise RuntimeError("value cannot be converted to type double without overflow")
        return float(value.item())
    if isinstance(value, np.complexfloating):
        return float(value.real)
    return float(value)


def _check_arg_types(input, weight, bias, running_mean, running_var, training, momentum,
                     eps) -> None:
    """``TypeError`` with the wording of ``torch.batch_norm``'s argument parser, which reports the
    first wrong argument in its positional order."""
    named = (("input", 1, input), ("weight", 2, weight), ("bias", 3, bias),
             ("running_mean", 4, running_mean), ("running_var", 5, running_var))
    for name, pos, value in named:
        if not isinstance(value, Tensor) and not (value is None and name != "input"):
            raise TypeError(f"batch_norm(): argument '{name}' (position {pos}) must be Tensor, "
                            f"not {_type_name(value)}")
    if not isinstance(training, bool):
        raise TypeError("batch_norm(): argument 'training' (position 6) must be bool, "
                        f"not {_type_name(training)}")
    for name, pos, value in (("momentum", 7, momentum), ("eps", 8, eps)):
        if not _is_parser_float(value):
            raise TypeError(f"batch_norm(): argument '{name}' (position {pos}) must be float, "
                            f"not {_type_name(value)}")


def describe(t: Optional[Tensor]) -> Optional[_checks.Operand]:
    """A tensor as ``_checks`` sees it (None stays None)."""
    if t is None:
        return None
    return _checks.Operand(tuple(t.shape), _dtype_name(t), t.requires_grad, str(t.device))


def check_batch_norm_args(
    input: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    training: bool,
    momentum: float,
    eps: float,
) -> Optional[Tensor]:
    """Every check of :func:`batch_norm`, in torch's order; torch's result for an empty input.

    Raises what ``F.batch_norm`` raises for bad arguments. Returns ``None`` when the input has
    elements (the caller computes), else the output of torch's early return for an empty batch (the
    caller returns it as is). Shared by every implementation of ``batch_norm`` in the package.
    """
    # torch's order: the Python-level checks of F.batch_norm (on the raw arguments: ``training``
    # only for its truth value, ``eps`` compared as given), then the argument parser's types in
    # positional order, then ATen's checks. A non-tensor input in training is reported first
    # (torch fails there with an AttributeError on ``input.size()``; see above).
    if training and not isinstance(input, Tensor):
        _check_arg_types(input, weight, bias, running_mean, running_var, training, momentum, eps)
    _checks.check_python_rules(tuple(input.shape) if training else (), training, eps)
    _check_arg_types(input, weight, bias, running_mean, running_var, training, momentum, eps)
    if input.numel() == 0:
        # torch's early return (ATen _batch_norm_impl_index): no further checks, no buffer update;
        # a clone keeps the gradient chain, weight/bias enter through their first element only.
        out = input.clone()
        if weight is not None:
            out = out * weight.select(0, 0)
        if bias is not None:
            out = out + bias.select(0, 0)
        return out

    check_tensors(input, running_mean, running_var, weight, bias, training)
    return None


def check_tensors(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                  weight: Optional[Tensor], bias: Optional[Tensor], training: bool) -> None:
    """The checks of :func:`batch_norm` after its early return for an empty input, in torch's order.

    Rank, element counts, buffers that require grad, buffer pairing, dtypes, buffer ranks, devices
    (:func:`bncourse._checks.check_batch_norm`).
    """
    _checks.check_batch_norm(describe(input), describe(running_mean), describe(running_var),
                             describe(weight), describe(bias), training=training,
                             grad_enabled=torch.is_grad_enabled())


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
    out = check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum,
                                eps)
    if out is not None:
        return out
    return _BatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                    bool(training), _as_float(momentum), _as_float(eps))


_TINY = {torch.float32: torch.finfo(torch.float32).tiny, torch.float64: torch.finfo(torch.float64).tiny}


# below these eps, invstd**2 * weight can overflow the compute dtype (invstd**2 <= 1 / eps)
_OVERFLOW_EPS = {torch.float32: 1e-30, torch.float64: 1e-290}


def _compute_dtype(t: Tensor, eps: float) -> torch.dtype:
    """float64 for float64 input, and for an ``eps`` below float32's normal range (1.2e-38):
    there a variance of the same size as ``eps`` underflows in float32 and ``1 / var`` overflows,
    where torch's CPU kernel, which accumulates in float64, stays finite. float32 otherwise."""
    if t.dtype == torch.float64 or 0.0 < eps < _TINY[torch.float32]:
        return torch.float64
    return torch.float32


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, without dispatching an op when it already has that dtype."""
    return t if t.dtype == dtype else t.to(dtype)


def _update_running(buffer: Tensor, batch_stat: Tensor, momentum: float) -> None:
    """The shared running-statistics update (:func:`bncourse.torch._moments.update_running`)."""
    update_running(buffer, batch_stat, momentum)


def _invstd(var: Tensor, eps: float, ct: torch.dtype, inplace: bool) -> Tensor:
    """``1 / sqrt(var + eps)`` in the compute dtype ``ct``.

    An ``eps`` below ``ct``'s normal range would round to 0 (or lose its digits) there, making a
    constant channel ``0 * inf = nan``; torch adds it in float64, and so does this then. A float64
    ``var`` (see :func:`_variance_float64`) is also reduced here.
    """
    if var.dtype == ct and (eps == 0.0 or eps >= _TINY[ct]):
        return var.add_(eps).rsqrt_() if inplace else var.add(eps).rsqrt_()
    return torch.add(var.to(torch.float64), eps).rsqrt_().to(ct)   # never in place: var may
                                                                        # be running_var itself


def batch_moments(xw: Tensor, ones: Optional[Tensor],
                  n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Optional[bool]]:
    """Training statistics of a working view: the shared :func:`~bncourse.torch._moments.shifted_moments`.

    ``xw`` ``(R, C)`` or ``(R, C, S)`` in the compute dtype, ``n`` its values per channel (> 0).
    Returns ``(pilot, centered, m, var, buffer, special)``: the pilot mean ``m0``, ``centered = xw - m0``, the
    mean's offset ``m = mean - m0`` and the biased variance (statistics shape; float64 where float32
    squares overflow), and a scratch tensor of ``xw``'s shape that :func:`normalize` may write the output
    into; last, ``special``: whether the data hold inf / nan or float32 squares that overflow, ``None``
    off the CPU.
    """
    def mean_of(t: Tensor) -> Tensor:
        return channel_sum(t, ones if ones is None or ones.dtype == t.dtype else ones.to(t.dtype)).div_(n)

    s = shifted_moments(xw, mean_of)
    return s.pilot, s.centered, s.m, s.var, s.squares, s.special


def normalize(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], layout: Layout,
              ones: Optional[Tensor], training: bool, eps: float, centered: Tensor, m: Tensor,
              invstd: Tensor, w: Optional[Tensor], b: Optional[Tensor],
              out: Optional[Tensor]) -> Tensor:
    """``y = (centered - m) * invstd * w + b`` in ``x``'s layout and dtype; saves what backward needs.

    ``w``, ``b`` are the weight and bias in the statistics shape and compute dtype (or ``None``);
    ``out`` is a scratch tensor of the working view's shape (or ``None``).
    """
    scale = invstd if w is None else invstd * w                  # weight * invstd
    if b is None:                                                # y = centered * scale + offset
        offset = torch.mul(m, scale).neg_()
    else:
        offset = torch.addcmul(b, m, scale, value=-1)
    y = torch.addcmul(offset, centered, scale, out=out)

    ctx.layout, ctx.training, ctx.eps, ctx.ct, ctx.ones = layout, training, eps, centered.dtype, ones
    if bias is not None:
        ctx.bias_dtype, ctx.bias_shape = bias.dtype, bias.shape
    ctx.save_for_backward(x, weight, centered, m, invstd, scale)
    return layout.from_work(_cast(y, x.dtype))


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
        ct = _compute_dtype(x, eps)
        n = layout.count
        xw = _cast(layout.to_work(x), ct)                        # (R, C) or (R, C, S)
        ones = ones_for(xw)
        w = None if weight is None else _cast(layout.per_channel(weight), ct)
        b = None if bias is None else _cast(layout.per_channel(bias), ct)

        if training:
            # special: inf / nan in the data (None off the CPU: the cheap fix below always runs there)
            pilot, centered, m, var, out, special = batch_moments(xw, ones, n)
            if running_mean is not None:                         # var is the biased variance
                mean = Moments(pilot, centered, m, var, out, special).mean()
                _update_running(running_mean, mean, momentum)
                # unbiased = var * n / (n - 1), as var + var / (n - 1): alpha costs no extra op
                _update_running(running_var, torch.add(var, var, alpha=1.0 / (n - 1)), momentum)
            invstd = _invstd(var, eps, ct, inplace=True)         # var is not needed any more
        else:
            centered, out = xw, None
            m = _cast(layout.per_channel(running_mean), ct)
            invstd = _invstd(_cast(layout.per_channel(running_var), ct), eps, ct, inplace=False)

        return normalize(ctx, x, weight, bias, layout, ones, training, eps, centered, m, invstd,
                         w, b, out)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, centered, m, invstd, scale = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        total = getattr(ctx, "total", None)
        if torch.is_grad_enabled():   # create_graph=True: a differentiable backward
            if total is not None:
                raise RuntimeError("SyncBatchNorm does not support double backward "
                                   "(create_graph=True through a synchronized forward)")
            dx, dw, db = _backward_differentiable(ctx, dy, x, weight, m, invstd)
            if need_x and not dx.requires_grad:
                # nothing it depends on requires grad (evaluation without weight): torch's dx still
                # carries a graph, through which a second grad reaches no input (None / zeros)
                dx = dx.detach().requires_grad_()
        else:
            dx, dw, db = _backward_fast(ctx, dy, centered, m, invstd, scale, need_x, need_w, total)
        dw = _cast(dw, weight.dtype).view(weight.shape) if need_w else None
        db = _cast(db, ctx.bias_dtype).view(ctx.bias_shape) if need_b else None
        return (dx if need_x else None, dw, db, None, None, None, None, None)


def _backward_fast(ctx, dy, centered, m, invstd, scale, need_x: bool, need_w: bool,
                   total: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor, int]]] = None):
    """The compact formula on the saved centred input; per-channel terms in the statistics shape.

    With ``k = weight * invstd`` (``scale``) and ``xhat = (centered - m) * invstd``, the training
    ``dx = k * dy - k / n * (dbeta + xhat * dgamma)`` is evaluated as
    ``k * dy + a * centered + c0``: ``a = -k * invstd * dgamma / n``, ``c0 = -k * dbeta / n - a * m``.

    ``total`` (data-parallel training) maps this process's ``(dbeta, dgamma)`` to the sums over all
    processes and their global count ``n``, which the formula for ``dx`` needs; the returned parameter
    gradients stay this process's share.
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
            db_all, dot_all, n = (db, dot, n) if total is None else total(db, dot)
        if need_x and n == 0:                                    # an empty global batch: empty dx
            dxw = torch.zeros_like(centered)
        elif need_x and ctx.eps < _OVERFLOW_EPS[ctx.ct]:
            # invstd**2 (in `a` below) may overflow: ATen's form, through xhat (one op more)
            xhat = (centered - m).mul_(invstd)
            dxw = torch.addcmul(db_all.div(n), xhat, dot_all.div(n)).neg_().add_(dyw).mul_(scale)
        elif need_x:
            a = torch.mul(invstd, dot_all).mul_(scale).div_(-n)
            c0 = torch.mul(a, m).neg_().addcmul_(scale, db_all, value=-1.0 / n)
            dxw = torch.addcmul(c0, centered, a, out=tmp)
            dxw.addcmul_(dyw, scale)
    else:
        if need_w:
            tmp = (centered - m).mul_(dyw)
            dot = channel_sum(tmp, ones).mul_(invstd)
        if need_x:
            dxw = torch.mul(dyw, scale, out=tmp)
    dx = layout.grad_from_work(_cast(dxw, dy.dtype), dy) if dxw is not None else None
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
    return layout.grad_from_work(_cast(dxw, x.dtype), dy), dw, db
