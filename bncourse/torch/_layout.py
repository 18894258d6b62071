"""Memory layouts and per-channel reductions for the tensor-op BatchNorm.

Every input ``x`` of shape ``(N, C, *spatial)`` is handled through a *working view* in which the
channel is axis 1 and the statistics reduce over every other axis. The output (and the input
gradient) gets torch's memory format: :func:`suggest_memory_format` of the input, which is what
ATen's CPU kernel allocates (``empty_like(input, input.suggest_memory_format())``):

* channels_last / channels_last_3d (the strides *look like* NHWC / NDHWC, e.g. a permuted view):
  the working view is ``(N * prod(spatial), C)``, a free view of NHWC storage;
* otherwise contiguous: the 2-D view ``(N, C)`` for ``(N, C)`` input or a spatial size of 1, else
  the 3-D view ``(N, C, S)``, ``S = prod(spatial)``.

An input (or ``dy``) that is not laid out in that format already -- a transposed or permuted view,
a stepped slice, an expanded (stride-0) tensor -- is copied into it once; nothing here uses
``.view`` on memory it does not know to be dense.

Per-channel values (statistics, weight, bias) have the *statistics shape* ``(1, C)`` or ``(1, C, 1)``,
which broadcasts against the working view. On small inputs every tensor op (a reshape, a dtype
conversion) costs a few microseconds, about as much as the arithmetic, so the 2-D view, which needs
no reshapes at all, is used wherever it applies.

Reductions on CPU are a matrix-vector product with a ones vector: on one thread this is 3x faster than
``Tensor.sum(0)`` and 10-30x faster than ``var_mean``/``einsum`` over the batch axis (measured on
2-core CPU machines, torch 2.13). Elsewhere (CUDA) a plain ``sum`` is used, which keeps full
float32 precision even where float32 matmuls are allowed to use TF32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


def _strides_like_channels_last(sizes: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """c10's ``is_channels_last_strides_2d`` / ``_3d``: do the strides order C fastest, then W, H, (D), N?

    Size-1 dimensions are ambiguous; c10 breaks the ties towards the contiguous format, and so does
    this (the same walk over the dimensions, with the same two special cases).
    """
    if strides[1] == 0:
        return False
    order = (1, 3, 2, 0) if len(sizes) == 4 else (1, 4, 3, 2, 0)
    minimum = 0
    for d in order:
        if sizes[d] == 0 or strides[d] < minimum:
            return False
        if d == 0 and minimum == strides[1]:
            return False
        minimum = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _channels_last_format(nd: int) -> torch.memory_format:
    return torch.channels_last if nd == 4 else torch.channels_last_3d


def _strides_say_channels_last(t: Tensor) -> bool:
    """ATen's ``t.suggest_memory_format()`` is channels_last(_3d) (not exposed in Python)."""
    return t.dim() in (4, 5) and _strides_like_channels_last(tuple(t.shape), t.stride())


def _dense_in_a_format(t: Tensor) -> bool:
    """ATen's ``is_contiguous`` helper of the BatchNorm kernels: contiguous in some format."""
    return t.is_contiguous() or (t.dim() in (4, 5) and
                                 t.is_contiguous(memory_format=_channels_last_format(t.dim())))


def suggest_memory_format(x: Tensor) -> torch.memory_format:
    """The memory format of torch's CPU BatchNorm output for input ``x``.

    Contiguous stays contiguous; a tensor dense in channels_last(_3d) order -- size-1 dimensions
    ignored, so also e.g. a permuted ``(1, C, D, 1, 1)`` -- gives channels_last(_3d) (ATen's
    ``batch_norm_use_channels_last_kernels``); anything else gets ATen's
    ``suggest_memory_format()`` (not exposed in Python), which reads the stride order.
    """
    if x.dim() not in (4, 5) or x.is_contiguous():
        return torch.contiguous_format
    fmt = _channels_last_format(x.dim())
    if x.is_contiguous(memory_format=fmt) or _strides_like_channels_last(tuple(x.shape), x.stride()):
        return fmt
    return torch.contiguous_format


@dataclass(frozen=True)
class Layout:
    """How a ``(N, C, *spatial)`` tensor maps to its working view ``(R, C)`` or ``(R, C, S)``."""

    shape: tuple[int, ...]   # the original (N, C, *spatial)
    channels_last: bool      # True: the working view is (N * prod(spatial), C)
    two_d: bool              # the working view is (R, C), per-channel values (1, C)
    dense: bool = True       # the input is contiguous in some memory format
    strides_cl: bool = False  # ATen's suggest_memory_format() of the input is channels_last

    @staticmethod
    def of(x: Tensor) -> "Layout":
        shape = tuple(x.shape)
        cl = suggest_memory_format(x) is not torch.contiguous_format
        return Layout(shape, cl, cl or math.prod(shape[2:]) == 1, _dense_in_a_format(x),
                      _strides_say_channels_last(x))

    def grad_format(self, dy: Tensor) -> torch.memory_format:
        """The memory format of torch's CPU ``dx`` for this input and ``dy``.

        ATen's backward takes its fast path when input and ``dy`` are both dense and their
        ``suggest_memory_format()`` agree; ``dx`` then has the forward kernel's format (this
        layout's). Otherwise ``dx`` gets the input's ``suggest_memory_format()``, which differs
        from the forward's only for tensors that are channels_last-dense through size-1
        dimensions (e.g. strides ``(9, 1, 3, 1)`` for ``(3, 3, 3, 1)``).
        """
        if self.dense and _dense_in_a_format(dy) and _strides_say_channels_last(dy) == self.strides_cl:
            return self.memory_format
        if self.strides_cl:
            return _channels_last_format(len(self.shape))
        return torch.contiguous_format

    @property
    def memory_format(self) -> torch.memory_format:
        return _channels_last_format(len(self.shape)) if self.channels_last else torch.contiguous_format

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
        """``(N, C, *spatial)`` -> the working view (a copy only when ``t`` is not dense in this
        layout's memory format: a permuted, stepped or expanded view)."""
        n, c = self.shape[:2]
        if self.channels_last:
            t = t.contiguous(memory_format=self.memory_format)
            perm = (0, *range(2, t.dim()), 1)
            return t.permute(perm).view(-1, c)
        if not t.is_contiguous():
            t = t.contiguous()
        if self.two_d:
            return t if t.dim() == 2 else t.view(n, c)
        return t.view(n, c, math.prod(self.shape[2:]))     # explicit S: N may be 0

    def grad_from_work(self, t: Tensor, dy: Tensor) -> Tensor:
        """:meth:`from_work` for ``dx``, in :meth:`grad_format` (one copy where that differs)."""
        dx = self.from_work(t)
        if len(self.shape) in (4, 5):
            fmt = self.grad_format(dy)
            if fmt is not self.memory_format:
                dx = dx.contiguous(memory_format=fmt)
        return dx

    def from_work(self, t: Tensor) -> Tensor:
        """Inverse of :meth:`to_work`: a ``(N, C, *spatial)`` view of ``t`` in this layout."""
        if self.channels_last:
            n, c, *spatial = self.shape
            nd = len(self.shape)
            inverse = (0, nd - 1, *range(1, nd - 1))
            return t.view(n, *spatial, c).permute(inverse)
        return t if t.dim() == len(self.shape) else t.view(self.shape)

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
