"""``BatchNorm1d/2d/3d`` over :func:`bncourse.triton.batch_norm`: drop-in for ``torch.nn.BatchNorm*d``.

They are :mod:`bncourse.torch`'s modules (parameters, buffers, ``state_dict``, momentum=None,
track_running_stats, input-rank checks) with the Triton functional form in the forward.

Shapes: BatchNorm1d (N, C) or (N, C, L); BatchNorm2d (N, C, H, W); BatchNorm3d (N, C, D, H, W).
"""
from __future__ import annotations

from .. import torch as _bt
from .functional import batch_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class BatchNorm1d(_bt.BatchNorm1d):
    """Drop-in ``torch.nn.BatchNorm1d`` on fused Triton kernels: input (N, C) or (N, C, L)."""

    _batch_norm = staticmethod(batch_norm)


class BatchNorm2d(_bt.BatchNorm2d):
    """Drop-in ``torch.nn.BatchNorm2d`` on fused Triton kernels: input (N, C, H, W)."""

    _batch_norm = staticmethod(batch_norm)


class BatchNorm3d(_bt.BatchNorm3d):
    """Drop-in ``torch.nn.BatchNorm3d`` on fused Triton kernels: input (N, C, D, H, W)."""

    _batch_norm = staticmethod(batch_norm)
