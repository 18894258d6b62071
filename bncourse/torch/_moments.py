"""The statistics every normalization layer shares: shifted moments and the running-statistics update.

BatchNorm, SyncBatchNorm, BatchRenorm, LayerNorm, GroupNorm, InstanceNorm and RMSNorm all take their
batch statistics from :func:`shifted_moments` and move their running buffers with
:func:`update_running`, so a numerical fix lands in every layer at once.

Shifted moments (the corrected two-pass of Chan, Golub & LeVeque), over whatever axes ``mean_of``
reduces:

* a pilot mean ``m0`` (no gradient), ``centered = x - m0`` and ``m = mean(centered)`` (the mean's small
  offset from ``m0``), ``var = mean(centered**2) - m**2``: float32 data with a large offset and a small
  spread (values near 1e4 spread over 1e-2) keep their variance and their ``x_hat = (centered - m) *
  invstd`` to float32 accuracy, where ``x - mean`` would lose the digits of the spread;
* on CPU, when the variance is not finite (the data hold ``inf`` / ``nan``, or float32 squares overflow:
  ``|x - mean| > 1.8e19``), the variance is recomputed in float64 (still ``nan`` for ``inf`` / ``nan``
  data, as torch's); off the CPU the check, which reads a value back, is skipped;
* the batch mean for the running statistics is ``m0 + m``, except that an infinite ``m0`` (a channel
  whose only specials are infinities of one sign) stays infinite, as torch's running mean does.

All ops are differentiable, so the same code serves an autograd graph (the family's functionals) and
an explicit backward (BatchNorm's ``autograd.Function``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["Moments", "shifted_moments", "update_running"]


@dataclass
class Moments:
    """Statistics of :func:`shifted_moments`; per-group tensors have the reduced shape of ``mean_of``.

    ``pilot``: ``m0`` (``None`` without centring); ``centered``: ``x - m0`` (``x`` itself without
    centring), ``x``'s shape; ``m``: ``mean - m0`` (``None`` without centring); ``var``: the biased
    variance (the mean square without centring), float64 where float32 squares overflowed;
    ``squares``: ``centered**2`` (a scratch tensor of ``x``'s shape); ``special``: whether the
    variance was not finite in the compute dtype (inf / nan data or overflowing squares), ``None``
    off the CPU (not checked).
    """

    pilot: Optional[Tensor]
    centered: Tensor
    m: Optional[Tensor]
    var: Tensor
    squares: Tensor
    special: Optional[bool]

    def mean(self) -> Tensor:
        """The batch mean ``m0 + m`` for the running statistics; ``±inf`` where ``m0`` is (then
        ``m`` is ``nan``), as torch's running mean. Zeros without centring."""
        if self.pilot is None:
            return torch.zeros_like(self.var)
        if self.special is False:
            return self.pilot + self.m
        # nan in m comes from an infinite (or nan) pilot only: the pilot then decides
        return self.pilot + self.m.nan_to_num(0.0, math.inf, -math.inf)


def shifted_moments(x: Tensor, mean_of: Callable[[Tensor], Tensor], *,
                    center: bool = True) -> Moments:
    """Mean offset and biased variance of ``x`` over the axes ``mean_of`` reduces (module docstring).

    ``mean_of(t)`` is the mean of ``t`` (``x``'s shape, any floating dtype) over the pooled axes, in
    ``t``'s dtype and in a shape that broadcasts against ``x``. ``center=False`` gives RMSNorm's mean
    square (``pilot`` and ``m`` are ``None``).
    """
    graph = torch.is_grad_enabled() and x.requires_grad   # else in place where it saves an op
    if center:
        pilot = mean_of(x.detach() if graph else x)             # m0, rounded to x's dtype
        centered = x - pilot
        m = mean_of(centered)                                    # mean - m0: small
        squares = centered * centered
        var = torch.addcmul(mean_of(squares), m, m, value=-1)
        var = var.clamp_min(0.0) if graph else var.clamp_min_(0.0)
    else:
        pilot, m, centered = None, None, x
        squares = x * x
        var = mean_of(squares)
    # var is inf or nan only when the data hold inf / nan or their float32 squares overflow; the
    # check reads one value back, which would stall an accelerator's queue: CPU only
    if x.device.type == "cpu":
        special = not math.isfinite((var.detach() if var.requires_grad else var).sum().item())
    else:
        special = None
    if special and x.dtype == torch.float32:
        c64 = centered.to(torch.float64)
        var = mean_of(c64 * c64)
        if center:
            m64 = m.to(torch.float64)
            var = torch.addcmul(var, m64, m64, value=-1).clamp_min(0.0)
    return Moments(pilot, centered, m, var, squares, special)


def update_running(buffer: Tensor, batch_stat: Tensor, momentum: float) -> None:
    """``buffer = (1 - momentum) * buffer + momentum * batch_stat`` in place, without gradient.

    ``batch_stat`` has ``buffer``'s number of elements (any shape, any floating dtype); the update is
    computed in ``batch_stat``'s dtype when that differs from the buffer's (a float16 buffer, a
    float64 variance). torch's formula literally, not ``lerp``: lerp computes
    ``b - (b - a) * (1 - w)`` for ``w >= 0.5``, which turns an infinite batch statistic into ``nan``;
    here ``inf`` stays ``inf`` and ``nan`` propagates, as in torch.
    """
    with torch.no_grad():
        stat = batch_stat.detach() if batch_stat.requires_grad else batch_stat
        stat = stat.view(buffer.shape) if stat.is_contiguous() else stat.reshape(buffer.shape)
        if buffer.dtype == stat.dtype:
            buffer.mul_(1.0 - momentum).add_(stat, alpha=momentum)
        else:
            buffer.copy_(buffer.to(stat.dtype).mul_(1.0 - momentum).add_(stat, alpha=momentum))
