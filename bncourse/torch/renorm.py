"""Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence
in Batch-Normalized Models"), on the same :func:`~bncourse.torch.standardize` as the rest.

Training, per channel, with the batch statistics ``mu_B``, ``sigma_B = sqrt(var_B + eps)`` and the
running ones ``mu``, ``sigma = sqrt(running_var + eps)`` (Algorithm 1 of the paper)::

    r     = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
    d     = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
    x_hat = (x - mu_B) / sigma_B * r + d
    y     = weight * x_hat + bias
    then  mu <- (1 - momentum) * mu + momentum * mu_B,
          running_var <- (1 - momentum) * running_var + momentum * var_B'

The statistics and the running update are BatchNorm's own (``bncourse.torch._moments``); the output
has BatchNorm's memory format.

Evaluation is BatchNorm's: ``y = (x - mu) / sigma * weight + bias``. With ``r_max = 1, d_max = 0``,
``r = 1`` and ``d = 0`` exactly, and training is BatchNorm's too.

One deliberate difference from the paper: the paper keeps a moving average of ``sigma``; here, as in
BatchNorm, the moving average is of the *unbiased* batch variance (``var_B' = var_B * m / (m - 1)``)
and ``sigma = sqrt(running_var + eps)``. The buffers and ``state_dict`` are then BatchNorm's, and a
model can switch between the two layers.

``r_max`` and ``d_max`` may be numbers or schedules: callables of the number of training steps done
so far (``num_batches_tracked`` before the step). :func:`linear_ramp` builds the paper's warm-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .. import _checks
from .._modes import average_factor
from ._layout import Layout, suggest_memory_format
from ._moments import update_running
from .functional import batch_norm, check_tensors
from .modules import _BatchNorm
from .norm_functional import _affine, _cast, _compute_dtype, standardize

__all__ = ["BatchRenorm1d", "BatchRenorm2d", "batch_renorm", "linear_ramp", "paper_schedule"]

@dataclass(frozen=True)
class linear_ramp:  # noqa: N801  (used like a function)
    """A schedule: ``start`` up to step ``begin``, then linear to ``end`` at step ``finish``, then ``end``.

    ``linear_ramp(1.0, 3.0, 5000, 40000)`` is the paper's ``r_max`` warm-up. A dataclass rather
    than a closure so that a module holding it can be pickled and deep-copied.
    """

    start: float
    end: float
    begin: int
    finish: int

    def __call__(self, step: int) -> float:
        if step <= self.begin:
            return float(self.start)
        if step >= self.finish:
            return float(self.end)
        frac = (step - self.begin) / (self.finish - self.begin)
        return float(self.start + frac * (self.end - self.start))


def paper_schedule(scale: float = 1.0) -> dict[str, linear_ramp]:
    """The paper's warm-up (Sec. 4.1): BatchNorm (``r_max = 1, d_max = 0``) for 5k steps, then
    ``r_max`` relaxed to 3 by step 40k and ``d_max`` to 5 by step 25k; ``scale`` shrinks the step
    counts (e.g. 0.01 for a short run). Use as ``BatchRenorm2d(C, **paper_schedule())``."""
    s = lambda k: int(round(k * scale))  # noqa: E731
    return {"r_max": linear_ramp(1.0, 3.0, s(5000), s(40000)),
            "d_max": linear_ramp(0.0, 5.0, s(5000), s(25000))}


def batch_renorm(
    input: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    r_max: float = 3.0,
    d_max: float = 5.0,
) -> Tensor:
    """Batch renormalization over dim 1 of ``input`` ``(N, C, *spatial)``; the others are ``(C,)``.

    In training the running buffers are updated in place after ``r`` and ``d`` are computed from
    their old values. Checks and messages are ``F.batch_norm``'s; ``r_max >= 1`` and ``d_max >= 0``
    (``ValueError`` otherwise). A zero-size batch is BatchNorm's (an empty output, no update).
    """
    if running_mean is None or running_var is None:
        raise ValueError("batch_renorm needs running_mean and running_var: r and d compare the batch "
                         "statistics with them")
    if r_max < 1 or d_max < 0:
        raise ValueError(f"batch_renorm needs r_max >= 1 and d_max >= 0, got r_max={r_max}, d_max={d_max}")
    _checks.check_input_rank(input.dim())
    _checks.check_python_rules(tuple(input.shape), training, eps)
    if input.numel() == 0:     # no statistics: BatchNorm's early return (buffers left alone)
        return batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    check_tensors(input, running_mean, running_var, weight, bias, training)
    c = input.shape[1]
    ct = _compute_dtype(input.dtype)
    seen: dict[str, Tensor] | None = None
    if input.requires_grad:
        seen = {}
        input = _DxFormat.apply(input, seen)          # dx in BatchNorm's memory format
    x = input.to(ct)
    dims = (0,) + tuple(range(2, input.dim()))
    per_channel = (1, c) + (1,) * (input.dim() - 2)                   # broadcasts against x
    mu = _cast(running_mean, ct, per_channel).detach()
    var = _cast(running_var, ct, per_channel).detach()
    if training:
        x_hat, mean_b, var_b = standardize(x, dims, eps)
        sigma = torch.sqrt(var + eps)
        # var_b is float64 where float32 squares overflow: r and d are clipped before rounding to ct
        r = (torch.sqrt(var_b.detach() + eps) / sigma).clamp(1.0 / r_max, r_max)
        d = ((mean_b.detach() - mu) / sigma).clamp(-d_max, d_max)
        # a one-point clip interval gives that point whatever the running statistics hold (a nan
        # sigma from a negative running_var, after a momentum outside [0, 1]): BatchNorm exactly
        r = torch.ones_like(r) if r_max == 1 else r
        d = torch.zeros_like(d) if d_max == 0 else d
        x_hat = x_hat * r.to(ct) + d.to(ct)
        m = input.numel() // c
        update_running(running_mean, mean_b, momentum)           # the shared update: inf stays inf
        update_running(running_var, var_b * (m / (m - 1)), momentum)
    else:
        x_hat = standardize(x, dims, eps, mean=mu, var=var)[0]
    y = _affine(x_hat, _cast(weight, ct, per_channel), _cast(bias, ct, per_channel))
    y = y.to(input.dtype).contiguous(memory_format=suggest_memory_format(input))   # BatchNorm's
    return y if seen is None else _SeeDy.apply(y, seen)


class _SeeDy(torch.autograd.Function):
    """Identity on the output that remembers the incoming gradient ``dy`` for :class:`_DxFormat`."""

    @staticmethod
    def forward(ctx, y: Tensor, seen: dict) -> Tensor:
        ctx.seen = seen
        return y.view_as(y)

    @staticmethod
    def backward(ctx, dy: Tensor):
        ctx.seen["dy"] = dy
        return dy, None


class _DxFormat(torch.autograd.Function):
    """Identity on the input whose backward gives ``dx`` BatchNorm's memory format, which depends on
    the input's and on ``dy``'s layouts (``Layout.grad_format``)."""

    @staticmethod
    def forward(ctx, x: Tensor, seen: dict) -> Tensor:
        ctx.seen, ctx.layout = seen, Layout.of(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dx: Tensor):
        dy = ctx.seen.pop("dy", None)
        fmt = ctx.layout.grad_format(dy) if dy is not None else ctx.layout.memory_format
        return dx.contiguous(memory_format=fmt), None


class _BatchRenorm(_BatchNorm):
    """BatchNorm's parameters, buffers and ``state_dict``; the training forward renormalizes.

    Args: BatchNorm's (``num_features, eps, momentum, affine, track_running_stats, device, dtype``
    and keyword-only ``bias``, in the same positions), and keyword-only

        r_max: bound of ``r`` (>= 1), a number or a schedule ``step -> float``.
        d_max: bound of ``d`` (>= 0), a number or a schedule ``step -> float``.

    ``track_running_stats`` must stay True: r and d compare the batch statistics with the running
    ones (``ValueError`` otherwise). ``momentum=None`` is the cumulative average, as in BatchNorm.
    The schedules are evaluated at ``num_batches_tracked`` (the number of earlier training steps)
    when each training step starts.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True,
                 r_max: float | Callable[[int], float] = 3.0,
                 d_max: float | Callable[[int], float] = 5.0) -> None:
        if not track_running_stats:
            raise ValueError("BatchRenorm needs running statistics: track_running_stats must be True")
        super().__init__(num_features, eps, momentum, affine, True, device, dtype, bias=bias)
        self.r_max = r_max
        self.d_max = d_max

    def limits(self) -> tuple[float, float]:
        """``(r_max, d_max)`` for the next training step."""
        step = int(self.num_batches_tracked)
        r_max = self.r_max(step) if callable(self.r_max) else float(self.r_max)
        d_max = self.d_max(step) if callable(self.d_max) else float(self.d_max)
        return r_max, d_max

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_max={self.r_max}, d_max={self.d_max}"

    def forward(self, input: Tensor) -> Tensor:
        """``input`` ``(N, C, *spatial)`` -> the same shape (see the subclass for the ranks)."""
        self._check_input_dim(input)
        r_max, d_max = self.limits()
        if self.training:            # batch renormalization always tracks its statistics
            self.num_batches_tracked.add_(1)
        factor = average_factor(self.momentum, self.num_batches_tracked if self.training else None)
        return batch_renorm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, factor, self.eps, r_max, d_max)


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization of ``(N, C)`` or ``(N, C, L)`` input (``BatchNorm1d``'s shapes)."""

    _allowed_ranks = (2, 3)


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization of ``(N, C, H, W)`` input (``BatchNorm2d``'s shapes)."""

    _allowed_ranks = (4,)
