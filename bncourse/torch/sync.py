"""``SyncBatchNorm``: BatchNorm over the global batch of data-parallel training, on CPU and CUDA.

In data-parallel training every process (*rank*) holds a share of the batch. :class:`SyncBatchNorm`
normalizes with the statistics of the whole batch, exchanged through ``torch.distributed`` (gloo on
CPU, NCCL or gloo on CUDA), so outputs, gradients and running statistics are those of one process
running :func:`~bncourse.torch.batch_norm` on the concatenated batch. Shapes: input ``(N_r, C, *spatial)``
on rank ``r``, any ``N_r >= 0``; the global count per channel is ``n = sum_r N_r * prod(spatial)``.

Communication, per layer and training step
  * forward: one ``all_gather`` of ``2C + 1`` values per rank: the rank's count, its per-channel mean
    and its biased variance, each computed locally by the corrected two-pass of
    :func:`~bncourse.torch.batch_norm`. They are combined with the pairwise formula of Chan, Golub &
    LeVeque in float64: ``mean = sum_r n_r mean_r / n``,
    ``var = sum_r n_r (var_r + (mean_r - mean)**2) / n``. Every term is non-negative, so nothing cancels:
    in float32 a channel with offset 1e4 and standard deviation 1e-2 keeps its variance to ~1e-6
    relative. The alternative, an ``all_reduce`` of raw sums ``sum x`` and ``sum x**2``, needs one shift
    common to all ranks; without one more round trip the only such shift is a constant, and then
    ``E[x**2] - E[x]**2`` loses every digit of that variance in float32 (it comes out negative or
    ~100 % off). Gathering counts also weights ranks by their share, as torch does: uneven batches and
    ranks with no samples are exact.
  * backward: one ``all_reduce`` (sum) of ``2C`` values: ``sum(dy)`` and ``sum(dy * xhat)`` per channel,
    the two sums of the compact backward formula. The parameter gradients stay each rank's share:
    ``DistributedDataParallel`` (or an explicit all-reduce) sums them, as for any parameter.

Every rank combines the same gathered table in the same order, so the running statistics are bitwise
identical on all ranks. In evaluation mode, and when no process group is initialized (or it has one
rank), there is no communication and the layer is ``BatchNorm*d``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import _checks
from ._layout import Layout, ones_for
from .convert import take_over
from .functional import (_BatchNormFunction, _cast, _check_arg_types, _compute_dtype,
                         _update_running, batch_moments, batch_norm, check_tensors,
                         normalize)
from ._moments import Moments
from .modules import _BatchNorm

__all__ = ["SyncBatchNorm", "sync_batch_norm", "combine_moments"]


def sync_group(process_group: Optional[Any] = None) -> Optional[Any]:
    """The group to synchronize over, or ``None`` when there is nothing to synchronize.

    ``None`` when ``torch.distributed`` is unavailable or not initialized, or the group (default: the
    whole world) has a single rank.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = dist.group.WORLD if process_group is None else process_group
    return group if dist.get_world_size(group) > 1 else None


def combine_moments(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, int]:
    """The statistics of a batch from those of its parts (Chan, Golub & LeVeque's pairwise formula).

    ``counts`` ``(P, 1)`` values per channel in each part, ``means`` and ``variances`` ``(P, C)``
    (biased; ignored where the count is 0). Returns the mean and biased variance ``(C,)`` of the
    whole batch and its count: ``mean = sum_p n_p mean_p / n``,
    ``var = sum_p n_p (var_p + (mean_p - mean)**2) / n`` -- every term non-negative, nothing cancels.
    """
    total = int(counts.sum().item())
    if total == 0:
        return means.new_zeros(means.shape[1]), variances.new_zeros(variances.shape[1]), 0
    weights = counts / total                                     # (P, 1): n_p / n
    mean = (weights * means).sum(0)
    var = (weights * (variances + (means - mean).square())).sum(0)
    return mean, var, total


def global_moments(count: int, mean: Tensor, var: Tensor, group: Any) -> tuple[Tensor, Tensor, int]:
    """Combine every rank's ``(count, mean, biased var)`` into the global ones (one ``all_gather``).

    ``mean`` and ``var`` are this rank's per-channel values ``(C,)`` (ignored when ``count == 0``).
    Returns the global mean and biased variance ``(C,)`` in float64 and the global count.
    """
    local = torch.cat([mean.new_full((1,), float(count)), mean, var.to(mean.dtype)])
    table = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(table, local, group=group)
    rows = torch.stack(table)                                    # (world, 2C + 1)
    c = mean.numel()
    return combine_moments(rows[:, :1], rows[:, 1:c + 1], rows[:, c + 1:])


def sync_batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                    weight: Optional[Tensor], bias: Optional[Tensor], momentum: float, eps: float,
                    group: Any) -> Tensor:
    """Training-mode :func:`~bncourse.torch.batch_norm` with statistics over all ranks of ``group``.

    ``input`` ``(N_r, C, *spatial)`` with ``N_r >= 0``; every rank of ``group`` must call it (with the
    same ``C``). Validation is :func:`~bncourse.torch.batch_norm`'s; a global batch of one value per
    channel raises torch's ``ValueError`` on every rank.
    """
    _check_arg_types(input, weight, bias, running_mean, running_var, True, momentum, eps)
    _checks.check_eps(eps, True)
    check_tensors(input, running_mean, running_var, weight, bias, True)
    return _SyncBatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                        float(momentum), float(eps), group)


class _SyncBatchNormFunction(_BatchNormFunction):
    """The forward gathers the global statistics; the backward of the base class all-reduces its sums."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                running_mean: Optional[Tensor], running_var: Optional[Tensor],
                momentum: float, eps: float, group: Any) -> Tensor:
        layout = Layout.of(x)
        ct = _compute_dtype(x, eps)
        n = layout.count
        xw = _cast(layout.to_work(x), ct)                        # (R, C) or (R, C, S)
        ones = ones_for(xw)
        if n > 0:
            pilot, centered, m, var, out, special = batch_moments(xw, ones, n)
        else:                                                    # no samples here: count 0
            pilot = m = var = xw.new_zeros(layout.stat_shape)
            centered, out, special = xw, None, False
        # this rank's mean in float64: pilot + offset exactly, so the spread of the rank means
        # survives; an infinite pilot stays infinite (the shared Moments.mean)
        mean = Moments(pilot.to(torch.float64), centered, m.to(torch.float64), var, out, special).mean()
        g_mean, g_var, total = global_moments(n, mean.flatten(), var.flatten(), group)
        if total == 1:
            raise ValueError("Expected more than 1 value per channel when training, "
                             f"got input size {total}")
        shape = layout.stat_shape
        if total > 0 and running_mean is not None:               # identical on every rank
            _update_running(running_mean, _cast(g_mean, ct).view(shape), momentum)
            _update_running(running_var, _cast(g_var * (total / (total - 1)), ct).view(shape),
                            momentum)
        # the global mean as an offset from this rank's pilot (small: no digits lost in ct)
        m = _cast(g_mean.view(shape) - pilot, ct)
        invstd = _cast(g_var.add(eps).rsqrt_(), ct).view(shape)

        def total_sums(db: Tensor, dot: Tensor) -> tuple[Tensor, Tensor, int]:
            both = torch.cat([db.flatten(), dot.flatten()])
            dist.all_reduce(both, op=dist.ReduceOp.SUM, group=group)
            return both[:db.numel()].view(db.shape), both[db.numel():].view(dot.shape), total

        ctx.total = total_sums
        w = None if weight is None else _cast(layout.per_channel(weight), ct)
        b = None if bias is None else _cast(layout.per_channel(bias), ct)
        return normalize(ctx, x, weight, bias, layout, ones, True, eps, centered, m, invstd, w, b, out)


class SyncBatchNorm(_BatchNorm):
    """Drop-in ``torch.nn.SyncBatchNorm`` that also runs on CPU: input ``(N, C, *spatial)``.

    Same constructor as torch's (``num_features, eps, momentum, affine, track_running_stats,
    process_group``, ``device``, ``dtype``, keyword ``bias``), same parameters, buffers and
    ``state_dict``. In training, inside an initialized process group of more than one rank, the batch
    statistics are those of the global batch (see the module docstring); otherwise the layer is
    ``BatchNorm*d`` and communicates nothing.

    Raises:
        ValueError: ``expected at least 2D input (got 1D input)``; ``SyncBatchNorm number of input
        channels should be non-zero``; ``Expected more than 1 value per channel when training, got
        input size 1`` for a global batch of one value per channel. RuntimeError: a channel count
        that differs from ``num_features`` (``running_mean should contain 3 elements not 4``).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Optional[Any] = None,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        _checks.check_input_rank(input.dim())
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    def forward(self, input: Tensor) -> Tensor:
        """``input`` ``(N, C, *spatial)`` on this rank -> output of the same shape."""
        self._check_input_dim(input)
        if self.training and self.track_running_stats and self.num_batches_tracked is None:
            # torch's check (track_running_stats switched on after construction without buffers)
            raise AssertionError("num_batches_tracked must not be None")
        running_mean, running_var, weight, bias, use_batch_stats, factor, eps = self._batch_norm_args()
        group = sync_group(self.process_group) if self.training else None
        if group is None:
            return batch_norm(input, running_mean, running_var, weight, bias, use_batch_stats,
                              factor, eps)
        return sync_batch_norm(input, running_mean, running_var, weight, bias, factor, eps, group)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module,
                               process_group: Optional[Any] = None) -> nn.Module:
        """Replace every BatchNorm layer in ``module`` (recursively) by a :class:`SyncBatchNorm`.

        Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: every subclass of torch's or
        bncourse's BatchNorm base class is converted; the new layers take over the *same* parameter
        and buffer tensors, the hyper-parameters, the ``training`` flag and ``qconfig``. Returns the
        converted module: a new root if ``module`` itself is a BatchNorm layer.
        """
        converted = module
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, _BatchNorm)):
            converted = take_over(cls(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats, process_group, device="meta",
                                      bias=module.bias is not None or not module.affine), module)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted
