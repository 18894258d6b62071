"""The Triton kernels of :mod:`bncourse.triton` and the host code that launches them.

Importing this module imports ``triton``; :mod:`bncourse.triton.functional` imports it lazily, so the
package imports without Triton. The kernels run compiled (CUDA tensors) or in Triton's interpreter
(CPU tensors) as Triton itself does in this process, which Triton fixes when it is first imported:
interpreted if ``TRITON_INTERPRET=1`` was in the environment then.

Every input is handled as a 3-D *working view* ``(R, C, S)`` with element ``(r, c, s)`` at offset
``r * sr + c * sc + s``:

* NCHW-like (contiguous, spatial size > 1): ``R = N``, ``S = prod(spatial)``, ``sr = C * S``, ``sc = S``;
* channel-innermost (``(N, C)``, channels_last, channels_last_3d, or a spatial size of 1):
  ``R = N * prod(spatial)``, ``S = 1``, ``sr = C``, ``sc = 1``.

A program works on tiles ``[BLOCK_R, BLOCK_C, BLOCK_S]``: ``BLOCK_C = 1`` in the NCHW case (a tile is
rows of one channel, contiguous along ``s``), ``BLOCK_S = 1`` in the channel-innermost case (a tile is
rows of ``BLOCK_C`` neighbouring channels, contiguous along ``c``), so loads are contiguous either way.

Kernels (all accumulation in float32):

* ``_reduce_kernel``: grid ``(channel blocks, splits)``; each program sums over its share of rows.
  Forward: the *shifted* sums ``sum(x - k)`` and ``sum((x - k)**2)``, ``k`` the channel's first
  value (0 if that is inf / nan), and ``sum(((x - k) * 2**-64)**2)``, which stays finite where float32
  squares overflow (the variance is then taken from it). Backward: ``sum(dy)`` and
  ``sum(dy * (x - mean))``. Partial sums go to a ``(3, splits, C)`` (backward ``(2, splits, C)``)
  float32 workspace.
* ``_forward_kernel``: one tile per program. Training: combines the partial sums of its channels into
  ``mean`` and ``invstd`` (the program holding the first tile of a channel also stores them for the
  backward and updates the running statistics); evaluation: reads the running statistics. Then
  ``y = ((x - k) - m) * invstd * weight + bias``.
* ``_backward_kernel``: one tile per program. Combines the backward partial sums into
  ``dbeta = sum(dy)``, ``dgamma = invstd * sum(dy * (x - mean))`` (stored once, in the parameters'
  dtype), then ``dx = weight * invstd * (dy - (dbeta + xhat * dgamma) / n)`` (training) or
  ``dx = dy * weight * invstd`` (evaluation).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..torch._layout import Layout

try:                                   # Triton's own library functions tell which mode it is in
    from triton.runtime.interpreter import InterpretedFunction
    INTERPRETED: bool = isinstance(tl.sum, InterpretedFunction)
except ImportError:                    # a Triton without the interpreter
    INTERPRETED = False


def _jit(fn):
    """``triton.jit`` in the mode of Triton's library, whatever the environment says now."""
    return InterpretedFunction(fn) if INTERPRETED else triton.jit(fn)


# 2**-64: (d * 2**-64)**2 is finite for every float32 d, where d**2 overflows for |d| > 1.8e19
_SQ_SCALE = tl.constexpr(2.0 ** -64)

# The interpreter rounds float32 -> bfloat16 by truncation; the GPU rounds to nearest even.
_BF16_BY_BITS = tl.constexpr(INTERPRETED)


@_jit
def _rounded(v, ptr):
    """float32 ``v`` in ``ptr``'s element type, rounded to nearest even (as compiled code does)."""
    out = v.to(ptr.dtype.element_ty)
    if _BF16_BY_BITS:
        if ptr.dtype.element_ty == tl.bfloat16:
            bits = v.to(tl.uint32, bitcast=True)
            bits = bits + 0x7FFF + ((bits >> 16) & 1)
            out = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return out


@_jit
def _offsets(r0, c0, s0, R, C, S, sr, sc,
             BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Offsets ``[BLOCK_R, BLOCK_C, BLOCK_S]`` (int64) of a tile and its in-bounds mask."""
    r = r0 + tl.arange(0, BLOCK_R)
    c = c0 + tl.arange(0, BLOCK_C)
    s = s0 + tl.arange(0, BLOCK_S)
    off = (r.to(tl.int64)[:, None, None] * sr + (c * sc)[None, :, None].to(tl.int64)
           + s[None, None, :])
    mask = (r < R)[:, None, None] & (c < C)[None, :, None] & (s < S)[None, None, :]
    return off, mask


@_jit
def _channel_stats(x_ptr, save_ptr, rm_ptr, rv_ptr, c, cmask, C, sc, eps,
                   TRAINING: tl.constexpr, SAVED: tl.constexpr):
    """Per-channel ``(k, m, invstd)``: ``mean = k + m``; ``k`` is the shift ``x`` is centred on.

    Training with ``SAVED``: read from the ``(3, C)`` save buffer; training without: only ``k``, the
    channel's first value (``m``/``invstd`` zero); evaluation: ``k = running_mean``, ``m = 0``.
    """
    if TRAINING:
        if SAVED:
            k = tl.load(save_ptr + c, mask=cmask, other=0.0)
            m = tl.load(save_ptr + C + c, mask=cmask, other=0.0)
            invstd = tl.load(save_ptr + 2 * C + c, mask=cmask, other=0.0)
        else:
            k = tl.load(x_ptr + c.to(tl.int64) * sc, mask=cmask, other=0.0).to(tl.float32)
            # an inf / nan first value would make every x - k nan: shift by 0 then, so that an
            # infinite mean stays infinite (as torch's running mean)
            k = tl.where(tl.abs(k) < float("inf"), k, 0.0)
            m = tl.zeros_like(k)
            invstd = tl.zeros_like(k)
    else:
        k = tl.load(rm_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        m = tl.zeros_like(k)
        var = tl.load(rv_ptr + c, mask=cmask, other=1.0).to(tl.float32)
        invstd = 1.0 / tl.sqrt_rn(var + eps)
    return k, m, invstd


@_jit
def _combine_one(part_ptr, c, cmask, C, n_splits, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Sum the ``(n_splits, C)`` partial sums at ``part_ptr`` of channels ``c`` -> ``[BLOCK_C]``."""
    a = tl.zeros([BLOCK_K, BLOCK_C], tl.float32)
    for k0 in range(0, n_splits, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        mask = (k < n_splits)[:, None] & cmask[None, :]
        a += tl.load(part_ptr + k[:, None] * C + c[None, :], mask=mask, other=0.0)
    return tl.sum(a, axis=0)


@_jit
def _combine(part_ptr, c, cmask, C, n_splits, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Sum the ``(2, n_splits, C)`` partial sums of channels ``c`` -> two ``[BLOCK_C]`` vectors."""
    a = tl.zeros([BLOCK_K, BLOCK_C], tl.float32)
    b = tl.zeros([BLOCK_K, BLOCK_C], tl.float32)
    for k0 in range(0, n_splits, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        off = k[:, None] * C + c[None, :]
        mask = (k < n_splits)[:, None] & cmask[None, :]
        a += tl.load(part_ptr + off, mask=mask, other=0.0)
        b += tl.load(part_ptr + n_splits * C + off, mask=mask, other=0.0)
    return tl.sum(a, axis=0), tl.sum(b, axis=0)


@_jit
def _accumulate(x_ptr, dy_ptr, acc_a, acc_b, acc_c, k, m, r0, c0, s0, R, C, S, sr, sc,
                BACKWARD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                BLOCK_S: tl.constexpr):
    """Add one tile's terms to the accumulators (see ``_reduce_kernel``; ``acc_c``: forward only)."""
    off, mask = _offsets(r0, c0, s0, R, C, S, sr, sc, BLOCK_R, BLOCK_C, BLOCK_S)
    x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:
        dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(tl.float32)
        # (x - k) - m: x - k is exact for x near k, then the small m is taken off
        xc = tl.where(mask, (x - k[None, :, None]) - m[None, :, None], 0.0)
        acc_a += dy
        acc_b += dy * xc
    else:
        d = tl.where(mask, x - k[None, :, None], 0.0)
        acc_a += d
        acc_b += d * d
        ds = d * _SQ_SCALE                     # squares that overflow float32 stay finite here
        acc_c += ds * ds
    return acc_a, acc_b, acc_c


@_jit
def _reduce_kernel(x_ptr, dy_ptr, save_ptr, rm_ptr, rv_ptr, part_ptr,
                   R, C, S, sr, sc, rows_per_split, n_splits, eps,
                   BACKWARD: tl.constexpr, TRAINING: tl.constexpr,
                   BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Partial per-channel sums over rows ``[pid1 * rows_per_split, ...)``, see the module docstring."""
    pid_c = tl.program_id(0)
    pid_k = tl.program_id(1)
    c0 = pid_c * BLOCK_C
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    k, m, invstd = _channel_stats(x_ptr, save_ptr, rm_ptr, rv_ptr, c, cmask, C, sc, eps,
                                  TRAINING, BACKWARD)
    acc_a = tl.zeros([BLOCK_R, BLOCK_C, BLOCK_S], tl.float32)
    acc_b = tl.zeros([BLOCK_R, BLOCK_C, BLOCK_S], tl.float32)
    acc_c = tl.zeros([BLOCK_R, BLOCK_C, BLOCK_S], tl.float32)
    r_start = pid_k * rows_per_split
    r_end = tl.minimum(r_start + rows_per_split, R)
    for r0 in range(r_start, r_end, BLOCK_R):
        if BLOCK_S == 1:      # S == 1: no loop over s, so the compiler sees s0 = 0 (aligned loads)
            acc_a, acc_b, acc_c = _accumulate(x_ptr, dy_ptr, acc_a, acc_b, acc_c, k, m, r0, c0, 0,
                                              r_end, C, S, sr, sc, BACKWARD, BLOCK_R, BLOCK_C,
                                              BLOCK_S)
        else:
            for s0 in range(0, S, BLOCK_S):
                acc_a, acc_b, acc_c = _accumulate(x_ptr, dy_ptr, acc_a, acc_b, acc_c, k, m, r0, c0,
                                                  s0, r_end, C, S, sr, sc, BACKWARD, BLOCK_R,
                                                  BLOCK_C, BLOCK_S)
    a = tl.sum(tl.sum(acc_a, axis=2), axis=0)
    b = tl.sum(tl.sum(acc_b, axis=2), axis=0)
    tl.store(part_ptr + pid_k * C + c, a, mask=cmask)
    tl.store(part_ptr + (n_splits + pid_k) * C + c, b, mask=cmask)
    if not BACKWARD:
        sq = tl.sum(tl.sum(acc_c, axis=2), axis=0)
        tl.store(part_ptr + (2 * n_splits + pid_k) * C + c, sq, mask=cmask)


@_jit
def _tile_ids(R, C, S, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """This program's tile ``(r0, c0, s0)`` in a 1-D grid, the channel block varying slowest."""
    pid = tl.program_id(0)
    n_rb = (R + BLOCK_R - 1) // BLOCK_R
    if BLOCK_S == 1:          # S == 1 (channel innermost): s0 = 0, known to the compiler
        s0 = 0
        rest = pid
    else:
        n_sb = (S + BLOCK_S - 1) // BLOCK_S
        s0 = (pid % n_sb) * BLOCK_S
        rest = pid // n_sb
    pid_r = rest % n_rb
    pid_c = rest // n_rb
    return pid_r * BLOCK_R, pid_c * BLOCK_C, s0


@_jit
def _forward_kernel(x_ptr, y_ptr, part_ptr, w_ptr, b_ptr, rm_ptr, rv_ptr, save_ptr,
                    R, C, S, sr, sc, n_splits, count, momentum, eps, unbias,
                    TRAINING: tl.constexpr, UPDATE_RUNNING: tl.constexpr,
                    HAS_W: tl.constexpr, HAS_B: tl.constexpr, SAVE: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """Normalize and affine one tile; in training also finish the statistics (module docstring)."""
    r0, c0, s0 = _tile_ids(R, C, S, BLOCK_R, BLOCK_C, BLOCK_S)
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    k, m, invstd = _channel_stats(x_ptr, save_ptr, rm_ptr, rv_ptr, c, cmask, C, sc, eps,
                                  TRAINING, False)
    if TRAINING:
        s1, s2 = _combine(part_ptr, c, cmask, C, n_splits, BLOCK_C, BLOCK_K)
        s3 = _combine_one(part_ptr + 2 * n_splits * C, c, cmask, C, n_splits, BLOCK_C, BLOCK_K)
        m = s1 / count                                   # mean - k
        var = s2 / count - m * m                         # biased variance
        var = tl.where(var < 0.0, 0.0, var)              # (a nan stays nan, as torch's)
        invstd = 1.0 / tl.sqrt_rn(var + eps)
        # squares that overflow float32 (|x - k| > 1.8e19) but scaled squares that do not: the
        # variance from the scaled sums (inf in float32, as torch's running_var), invstd scaled back
        ms = m * _SQ_SCALE
        var_s = s3 / count - ms * ms
        var_s = tl.where(var_s < 0.0, 0.0, var_s)
        big = (s2 == float("inf")) & (s3 < float("inf"))
        invstd = tl.where(big, _SQ_SCALE / tl.sqrt_rn(var_s + eps * _SQ_SCALE * _SQ_SCALE), invstd)
        var = tl.where(big, var_s / _SQ_SCALE / _SQ_SCALE, var)
        if r0 + s0 == 0:                                 # one program per channel block writes
            if SAVE:
                tl.store(save_ptr + c, k, mask=cmask)
                tl.store(save_ptr + C + c, m, mask=cmask)
                tl.store(save_ptr + 2 * C + c, invstd, mask=cmask)
            if UPDATE_RUNNING:
                rm = tl.load(rm_ptr + c, mask=cmask, other=0.0)
                rv = tl.load(rv_ptr + c, mask=cmask, other=0.0)
                # (1 - momentum) * running + momentum * batch, as torch: exact for momentum 1
                new_rm = (1.0 - momentum) * rm.to(tl.float32) + momentum * (k + m)
                new_rv = (1.0 - momentum) * rv.to(tl.float32) + momentum * (var * unbias)
                tl.store(rm_ptr + c, _rounded(new_rm, rm_ptr), mask=cmask)
                tl.store(rv_ptr + c, _rounded(new_rv, rv_ptr), mask=cmask)
    scale = invstd
    if HAS_W:
        scale = scale * tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    off, mask = _offsets(r0, c0, s0, R, C, S, sr, sc, BLOCK_R, BLOCK_C, BLOCK_S)
    x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
    y = ((x - k[None, :, None]) - m[None, :, None]) * scale[None, :, None]
    if HAS_B:
        y += tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)[None, :, None]
    tl.store(y_ptr + off, _rounded(y, y_ptr), mask=mask)


@_jit
def _backward_kernel(x_ptr, dy_ptr, dx_ptr, part_ptr, w_ptr, save_ptr, rm_ptr, rv_ptr,
                     dw_ptr, db_ptr, R, C, S, sr, sc, n_splits, count, eps,
                     TRAINING: tl.constexpr, HAS_W: tl.constexpr, SUMS: tl.constexpr,
                     NEED_X: tl.constexpr, NEED_W: tl.constexpr, NEED_B: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    """dgamma, dbeta (stored once per channel block) and dx of one tile (module docstring)."""
    if NEED_X:
        r0, c0, s0 = _tile_ids(R, C, S, BLOCK_R, BLOCK_C, BLOCK_S)
    else:                                                # one program per channel block
        r0, c0, s0 = 0, tl.program_id(0) * BLOCK_C, 0
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    k, m, invstd = _channel_stats(x_ptr, save_ptr, rm_ptr, rv_ptr, c, cmask, C, sc, eps,
                                  TRAINING, True)
    dbeta = tl.zeros_like(k)
    dgamma = tl.zeros_like(k)
    if SUMS:
        dbeta, dot = _combine(part_ptr, c, cmask, C, n_splits, BLOCK_C, BLOCK_K)
        dgamma = dot * invstd
        if r0 + s0 == 0:                                 # one program per channel block writes
            if NEED_W:
                tl.store(dw_ptr + c, _rounded(dgamma, dw_ptr), mask=cmask)
            if NEED_B:
                tl.store(db_ptr + c, _rounded(dbeta, db_ptr), mask=cmask)
    if NEED_X:
        scale = invstd
        if HAS_W:
            scale = scale * tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        off, mask = _offsets(r0, c0, s0, R, C, S, sr, sc, BLOCK_R, BLOCK_C, BLOCK_S)
        dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(tl.float32)
        if TRAINING:
            x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
            xhat = ((x - k[None, :, None]) - m[None, :, None]) * invstd[None, :, None]
            dx = scale[None, :, None] * (dy - (dbeta[None, :, None]
                                               + xhat * dgamma[None, :, None]) / count)
        else:
            dx = dy * scale[None, :, None]
        tl.store(dx_ptr + off, _rounded(dx, dx_ptr), mask=mask)


# --- host side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Working view ``(R, C, S)`` with strides ``(sr, sc, 1)``, tile sizes and the reduction split."""

    R: int
    C: int
    S: int
    sr: int
    sc: int
    block_r: int
    block_c: int
    block_s: int
    rows_per_split: int
    n_splits: int
    block_k: int
    num_warps: int

    @property
    def count(self) -> int:
        return self.R * self.S

    @property
    def tiles(self) -> int:
        """Programs of the element-wise kernels: one per tile."""
        return (triton.cdiv(self.C, self.block_c) * triton.cdiv(self.R, self.block_r)
                * triton.cdiv(self.S, self.block_s))


def _pow2_at_most(n: int, cap: int) -> int:
    return min(triton.next_power_of_2(max(n, 1)), cap)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _target_programs(device: torch.device) -> int:
    """Programs the reduction should spread over: a few per SM on a GPU, few in the interpreter."""
    if device.type == "cuda":
        return 4 * _multiprocessors(device)
    return 2


def make_plan(layout: Layout, device: torch.device, tile: int | None = None) -> Plan:
    """Tile and split sizes for an input of ``layout`` (``tile``: elements per tile)."""
    n, c = layout.shape[:2]
    s = math.prod(layout.shape[2:])
    if tile is None:
        tile = 4096 if device.type == "cuda" else 1024
    if layout.two_d:                                   # channel innermost
        R, S, sr, sc = n * s, 1, c, 1
        block_c, block_s = _pow2_at_most(c, 64), 1
        block_r = _pow2_at_most(R, max(1, tile // block_c))
    else:                                              # NCHW-like
        R, S, sr, sc = n, s, c * s, s
        block_c, block_s = 1, _pow2_at_most(s, tile)
        block_r = _pow2_at_most(R, max(1, tile // block_s))
    row_blocks = triton.cdiv(R, block_r)
    splits = max(1, min(row_blocks, _target_programs(device) // triton.cdiv(c, block_c)))
    rows_per_split = triton.cdiv(row_blocks, splits) * block_r
    n_splits = triton.cdiv(R, rows_per_split)
    return Plan(R, c, S, sr, sc, block_r, block_c, block_s, rows_per_split, n_splits,
                _pow2_at_most(n_splits, 64), 8 if block_r * block_c * block_s >= 4096 else 4)


def _reduce(plan: Plan, x: Tensor, dy: Tensor | None, save: Tensor | None,
            running_mean: Tensor | None, running_var: Tensor | None, training: bool,
            eps: float) -> Tensor:
    # forward: sum(x - k), sum((x - k)**2), sum(((x - k) * 2**-64)**2); backward: the first two
    rows = 2 if dy is not None else 3
    part = torch.empty((rows, plan.n_splits, plan.C), device=x.device, dtype=torch.float32)
    dummy = part
    grid = (triton.cdiv(plan.C, plan.block_c), plan.n_splits)
    _reduce_kernel[grid](
        x, dummy if dy is None else dy, dummy if save is None else save,
        dummy if running_mean is None else running_mean,
        dummy if running_var is None else running_var, part,
        plan.R, plan.C, plan.S, plan.sr, plan.sc, plan.rows_per_split, plan.n_splits, eps,
        BACKWARD=dy is not None, TRAINING=training,
        BLOCK_R=plan.block_r, BLOCK_C=plan.block_c, BLOCK_S=plan.block_s,
        num_warps=plan.num_warps)
    return part


def forward(plan: Plan, x: Tensor, y: Tensor, weight: Tensor | None, bias: Tensor | None,
            running_mean: Tensor | None, running_var: Tensor | None, training: bool,
            momentum: float, eps: float, save: Tensor | None) -> None:
    """Write ``y``; in training fill ``save`` ``(3, C)`` (if given) and update the running buffers."""
    part = _reduce(plan, x, None, None, None, None, True, eps) if training else None
    dummy = x if part is None else part
    n = plan.count
    _forward_kernel[(plan.tiles,)](
        x, y, dummy, dummy if weight is None else weight, dummy if bias is None else bias,
        dummy if running_mean is None else running_mean,
        dummy if running_var is None else running_var, dummy if save is None else save,
        plan.R, plan.C, plan.S, plan.sr, plan.sc, plan.n_splits, float(n), momentum, eps,
        n / (n - 1) if n > 1 else 1.0,
        TRAINING=training, UPDATE_RUNNING=training and running_mean is not None,
        HAS_W=weight is not None, HAS_B=bias is not None, SAVE=save is not None,
        BLOCK_R=plan.block_r, BLOCK_C=plan.block_c, BLOCK_S=plan.block_s, BLOCK_K=plan.block_k,
        num_warps=plan.num_warps)


def backward(plan: Plan, x: Tensor, dy: Tensor, weight: Tensor | None, save: Tensor | None,
             running_mean: Tensor | None, running_var: Tensor | None, training: bool, eps: float,
             need_x: bool, need_w: bool, need_b: bool, param_dtype: torch.dtype
             ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(dx, dweight, dbias)``, each ``None`` where not needed."""
    sums = need_w or need_b or training
    part = _reduce(plan, x, dy, save, running_mean, running_var, training, eps) if sums else None
    dx = torch.empty_like(x) if need_x else None
    dw = torch.empty(plan.C, device=x.device, dtype=param_dtype) if need_w else None
    db = torch.empty(plan.C, device=x.device, dtype=param_dtype) if need_b else None
    dummy = dy if part is None else part
    # without dx only the per-channel results are left: one program per channel block
    grid = plan.tiles if need_x else triton.cdiv(plan.C, plan.block_c)
    _backward_kernel[(grid,)](
        x, dy, dummy if dx is None else dx, dummy, dummy if weight is None else weight,
        dummy if save is None else save, dummy if running_mean is None else running_mean,
        dummy if running_var is None else running_var, dummy if dw is None else dw,
        dummy if db is None else db,
        plan.R, plan.C, plan.S, plan.sr, plan.sc, plan.n_splits if sums else 0, float(plan.count),
        eps, TRAINING=training, HAS_W=weight is not None, SUMS=sums, NEED_X=need_x,
        NEED_W=need_w, NEED_B=need_b,
        BLOCK_R=plan.block_r if need_x else 1, BLOCK_C=plan.block_c,
        BLOCK_S=plan.block_s if need_x else 1, BLOCK_K=plan.block_k, num_warps=plan.num_warps)
    return dx, dw, db
