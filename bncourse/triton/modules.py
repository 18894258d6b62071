"""``BatchNorm1d/2d/3d`` over :func:`bncourse.triton.batch_norm`: drop-in for ``torch.nn.BatchNorm*d``.

They share :mod:`bncourse.torch`'s module base (parameters, buffers, ``state_dict``, momentum=None,
track_running_stats, input-rank checks); only the functional form called in the forward differs.

Shapes: BatchNorm1d (N, C) or (N, C, L); BatchNorm2d (N, C, H, W); BatchNorm3d (N, C, D, H, W).
"""
from __future__ import annotations

from ..torch.modules import _BatchNorm
from .functional import batch_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class _TritonBatchNorm(_BatchNorm):
    """bncourse.torch's module base with the fused kernels in the forward."""

    _batch_norm = staticmethod(batch_norm)


class BatchNorm1d(_TritonBatchNorm):
    """Drop-in ``torch.nn.BatchNorm1d`` on fused Triton kernels: input (N, C) or (N, C, L)."""

    _allowed_ranks = (2, 3)


class BatchNorm2d(_TritonBatchNorm):
    """Drop-in ``torch.nn.BatchNorm2d`` on fused Triton kernels: input (N, C, H, W)."""

    _allowed_ranks = (4,)


class BatchNorm3d(_TritonBatchNorm):
    """Drop-in ``torch.nn.BatchNorm3d`` on fused Triton kernels: input (N, C, D, H, W)."""

    _allowed_ranks = (5,)
