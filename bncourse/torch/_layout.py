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
float32 precision even where float32 matmuls are allowed to use TF32. Per-channel results are kept
as ``(1, C, 1)`` tensors that broadcast against the working view: on small inputs every extra op
(a reshape, a dtype conversion) costs about as much as the arithmetic, so the code avoids them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

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


def channel_sum(t3: Tensor, ones: Optional[Tensor]) -> Tensor:
    """Per-channel sum of an ``(R, C, S)`` tensor -> ``(1, C, 1)``, in ``t3``'s dtype.

    The result broadcasts against ``(R, C, S)``, so per-channel arithmetic needs no reshapes.
    ``ones`` is :func:`ones_for` ``(t3)``, made once per pass and shared by its reductions. On CPU
    the reduction over ``R`` is a GEMV with it; a remaining ``S`` axis is summed (pairwise) after.
    """
    r, c, s = t3.shape
    if ones is None:
        return t3.sum((0, 2), keepdim=True)
    cols = torch.mm(ones, t3.view(r, c * s))
    return cols.view(1, c, 1) if s == 1 else cols.view(1, c, s).sum(2, keepdim=True)


def ones_for(t3: Tensor) -> Optional[Tensor]:
    """The ``(1, R)`` ones row :func:`channel_sum` multiplies with on CPU; ``None`` elsewhere."""
    return t3.new_ones((1, t3.shape[0])) if t3.device.type == "cpu" else None


def per_channel(v: Tensor) -> Tensor:
    """A ``(C,)`` vector (or any tensor of ``C`` elements) as ``(1, C, 1)``, broadcasting against ``(R, C, S)``."""
    return v.reshape(1, -1, 1)
