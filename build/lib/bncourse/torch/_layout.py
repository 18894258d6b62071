"""Memory layouts and per-channel reductions for the tensor-op BatchNorm.

Every input ``x`` of shape ``(N, C, *spatial)`` is handled through a *working view* in which the
channel is axis 1 and the statistics reduce over every other axis:

* ``(N, C)`` input, or a spatial size of 1: the 2-D view ``(N, C)`` (the input itself);
* a channels_last / channels_last_3d tensor: ``(N * prod(spatial), C)`` — a free view of its NHWC
  storage, so the result can be laid out channels_last again;
* otherwise the 3-D view ``(N, C, S)``, ``S = prod(spatial)`` — free for a contiguous (NCHW) tensor;
  anything else is made contiguous first (one copy).

Per-channel values (statistics, weight, bias) have the *statistics shape* ``(1, C)`` or ``(1, C, 1)``,
which broadcasts against the working view. On small inputs every tensor op (a reshape, a dtype
conversion) costs a few microseconds, about as much as the arithmetic, so the 2-D view, which needs
no reshapes at all, is used wherever it applies.

Reductions on CPU are a matrix-vector product with a ones vector: on one thread this is 3x faster than
``Tensor.sum(0)`` and 10-30x faster than ``var_mean``/``einsum`` over the batch axis (see
``performance-cpu.md`` in the team notes). Elsewhere (CUDA) a plain ``sum`` is used, which keeps full
float32 precision even where float32 matmuls are allowed to use TF32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """How a ``(N, C, *spatial)`` tensor maps to its working view ``(R, C)`` or ``(R, C, S)``."""

    shape: tuple[int, ...]   # the original (N, C, *spatial)
    channels_last: bool      # True: the working view is (N * prod(spatial), C)
    two_d: bool              # the working view is (R, C), per-channel values (1, C)

    @staticmethod
    def of(x: Tensor) -> "Layout":
        shape = tuple(x.shape)
        cl = False
        if x.dim() in (4, 5) and not x.is_contiguous():
            fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
            cl = x.is_contiguous(memory_format=fmt)
        return Layout(shape, cl, cl or math.prod(shape[2:]) == 1)

    @property
    def num_channels(self) -> int:
        return self.shape[1]

    @property
    def count(self) -> int:
        """Values per channel, ``N * prod(spatial)``."""
        return self.shape[0] * math.prod(self.shape[2:])

    @property
    def stat_shape(self) -> tuple[int, ...]:
        """Shape of per-channel values, broadcasting against the working view."""
        return (1, self.shape[1]) if self.two_d else (1, self.shape[1], 1)

    def to_work(self, t: Tensor) -> Tensor:
        """``(N, C, *spatial)`` -> the working view (no copy when ``t`` has this layout)."""
        n, c = self.shape[:2]
        if self.channels_last:
            perm = (0, *range(2, t.dim()), 1)
            return t.permute(perm).reshape(-1, c)
        if self.two_d:
            return t if t.dim() == 2 else t.reshape(n, c)
        return t.reshape(n, c, -1)

    def from_work(self, t: Tensor) -> Tensor:
        """Inverse of :meth:`to_work`: a ``(N, C, *spatial)`` view of ``t`` in this layout."""
        if self.channels_last:
            n, c, *spatial = self.shape
            nd = len(self.shape)
            inverse = (0, nd - 1, *range(1, nd - 1))
            return t.reshape(n, *spatial, c).permute(inverse)
        return t if t.dim() == len(self.shape) else t.reshape(self.shape)

    def per_channel(self, v: Tensor) -> Tensor:
        """A tensor of ``C`` elements (weight, bias, a running buffer) as the statistics shape."""
        if self.two_d and v.dim() == 1:
            return v                       # (C,) already broadcasts against (R, C)
        return v.view(self.stat_shape) if v.is_contiguous() else v.reshape(self.stat_shape)


def ones_for(work: Tensor) -> Optional[Tensor]:
    """The ``(1, R)`` ones row :func:`channel_sum` multiplies with on CPU; ``None`` elsewhere."""
    return work.new_ones((1, work.shape[0])) if work.device.type == "cpu" else None


def channel_sum(work: Tensor, ones: Optional[Tensor]) -> Tensor:
    """Per-channel sum of a working view -> the statistics shape ``(1, C)`` / ``(1, C, 1)``.

    ``ones`` is :func:`ones_for` ``(work)``, made once per pass and shared by its reductions. On CPU
    the reduction over ``R`` is a GEMV with it; a remaining ``S`` axis is summed (pairwise) after.
    """
    if ones is None:
        return work.sum(0, keepdim=True) if work.dim() == 2 else work.sum((0, 2), keepdim=True)
    if work.dim() == 2:
        return torch.mm(ones, work)
    r, c, s = work.shape
    return torch.mm(ones, work.view(r, c * s)).view(1, c, s).sum(2, keepdim=True)
