"""Memory layouts and per-channel reductions for the tensor-op BatchNorm.

Every input ``x`` of shape ``(N, C, *spatial)`` is handled through a contiguous 3-D view
``(R, C, S)`` in which the channel is the middle axis and the statistics reduce over axes 0 and 2:

* a contiguous (NCHW-like) tensor gives ``R = N``, ``S = prod(spatial)`` — a free view;
* a channels_last / channels_last_3d tensor gives ``R = N * prod(spatial)``, ``S = 1`` — also a free
  view of its NHWC storage, so the result can be laid out channels_last again;
* anything else is made contiguous first (one copy).

Reductions on CPU are a matrix-vector product with a ones vector: on one thread this is 3x faster than
``Tensor.sum(0)`` and 10-30x faster than ``var_mean``/``einsum`` over the batch axis (see
``performance-cpu.md`` in the team notes). Elsewhere (CUDA) a plain ``sum`` is used, which keeps full
float32 precision even where float32 matmuls are allowed to use TF32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """How a ``(N, C, *spatial)`` tensor maps to its ``(R, C, S)`` working view."""

    shape: tuple[int, ...]   # the original (N, C, *spatial)
    channels_last: bool      # True: R = N * prod(spatial), S = 1

    @staticmethod
    def of(x: Tensor) -> "Layout":
        cl = False
        if x.dim() in (4, 5) and not x.is_contiguous():
            fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
            cl = x.is_contiguous(memory_format=fmt)
        return Layout(tuple(x.shape), cl)

    @property
    def num_channels(self) -> int:
        return self.shape[1]

    @property
    def count(self) -> int:
        """Values per channel, ``N * prod(spatial)``."""
        return self.shape[0] * math.prod(self.shape[2:])

    def to_rcs(self, t: Tensor) -> Tensor:
        """``(N, C, *spatial)`` -> contiguous ``(R, C, S)`` (a view when ``t`` has this layout)."""
        n, c = self.shape[:2]
        if self.channels_last:
            perm = (0, *range(2, t.dim()), 1)
            return t.permute(perm).reshape(-1, c, 1)
        return t.reshape(n, c, -1)

    def from_rcs(self, t3: Tensor) -> Tensor:
        """Inverse of :meth:`to_rcs`: a ``(N, C, *spatial)`` view of ``t3`` in this layout."""
        if self.channels_last:
            n, c, *spatial = self.shape
            nd = len(self.shape)
            inverse = (0, nd - 1, *range(1, nd - 1))
            return t3.reshape(n, *spatial, c).permute(inverse)
        return t3.reshape(self.shape)


def channel_sum(t3: Tensor) -> Tensor:
    """Per-channel sum of an ``(R, C, S)`` tensor -> ``(C,)`` float64.

    The big reduction over ``R`` runs in ``t3``'s dtype (a GEMV with ones on CPU); the small
    ``(C, S) -> (C,)`` one accumulates in float64.
    """
    r, c, s = t3.shape
    if t3.device.type == "cpu":
        ones = torch.ones(1, r, dtype=t3.dtype, device=t3.device)
        cols = torch.mm(ones, t3.view(r, c * s)).view(c, s)
    else:
        cols = t3.sum(0)
    return cols.sum(1, dtype=torch.float64)


def per_channel(v: Tensor, dtype: torch.dtype) -> Tensor:
    """A ``(C,)`` vector as a ``(1, C, 1)`` tensor broadcasting against ``(R, C, S)``."""
    return v.to(dtype).view(1, -1, 1)
