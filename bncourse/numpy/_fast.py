"""The tuned NumPy BatchNorm behind ``BatchNorm`` and the benchmark: same results as the plain
``bncourse.numpy.functional`` (the parity tests bind the two), in the input's dtype and at
memory speed.

Shapes: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``, viewed as ``(N, C, S)`` with
``S = prod(spatial)``; per-channel arrays are ``(C,)``; ``m = N * S`` values per channel.

What makes it fast, and the plain version not:

* computed in the input's dtype (float32 for float16), not float64, with float32 sums made
  accurate by chunking (``_sum_per_channel``) and a corrected two-pass variance;
* element-wise chains run block by block over cache-sized tiles (``_sample_blocks``);
* ``forward(..., reuse=cache)`` recycles a dead cache's centred-input array.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from bncourse.numpy._common import (as_ncs, check_forward, compute_dtype, grad_output, param_dtype,
                                    param_grads, update_running_stats)

__all__ = ["TunedCache", "forward", "backward"]


@dataclass
class TunedCache:
    """What ``backward`` needs from ``forward``.

    Every array is in the *compute dtype*: the input's dtype, or float32 for float16 input
    (torch's mixed path). Per-channel arrays have shape ``(C,)``.

    ``xc`` is the input minus a per-channel *shift*: a first estimate of the batch mean, in the
    compute dtype (training), or ``running_mean`` (evaluation). ``delta`` is what is left of the
    mean in ``xc``, so ``x - mean = xc - delta``. Rounding a mean of 1e4 to float32 alone can move
    it by 5e-4, far more than a standard deviation of 1e-2 tolerates; carrying ``delta`` keeps the
    exact mean without a float64 copy of ``x``. ``delta`` is tiny in training and 0 in evaluation.
    """

    xc: np.ndarray                 # (N, C, S) x - shift
    delta: np.ndarray              # (C,) mean - shift; x - mean = xc - delta
    var: np.ndarray                # (C,) variance used to normalise: biased batch var or running_var
    invstd: np.ndarray             # (C,) 1 / sqrt(var + eps)
    eps: float
    weight: np.ndarray | None   # (C,) gamma in the compute dtype, None without weight
    has_bias: bool
    training: bool                 # True: batch statistics, so the gradient flows through mean and var
    x_shape: tuple[int, ...]
    x_dtype: np.dtype
    weight_dtype: np.dtype         # dtype of dweight / dbias (the parameters' dtype)

    @property
    def m(self) -> int:
        """Number of values per channel, ``N * prod(spatial)``."""
        return self.xc.shape[0] * self.xc.shape[2]

    @property
    def x_hat(self) -> np.ndarray:
        """The normalised input ``(x - mean) / sqrt(var + eps)``, shape ``(N, C, S)``."""
        return (self.xc - self.delta[:, None]) * self.invstd[:, None]


_OVERFLOW_EPS = 1e-290   # below it, invstd**2 <= 1 / eps can overflow float64 in the backward


def _rows(a3: np.ndarray) -> np.ndarray:
    """``(N, C, S)`` -> ``(N, C * S)``: one row per sample (a view of a contiguous array)."""
    return a3.reshape(a3.shape[0], a3.shape[1] * a3.shape[2])


# Speed: every element-wise step (centring, y = (xc - delta) * scale + bias, dx = a*dy + b*xc + c)
# runs over blocks of whole samples of about _BLOCK_ELEMENTS values (64 KiB of float32), so that
# a block stays in the CPU cache between the ufunc calls of a chain and a temporary is one small
# reused scratch array, not a fresh full-size one (fresh large arrays cost page faults, often more
# than the arithmetic). 64 KiB also keeps the scratch and coefficient tiles below malloc's mmap
# threshold (128 KiB), so they are not page-faulted afresh on every call (measured: 128 KiB tiles
# made (256, 1024) 15% slower). Everything here is memory-bound: at (N, C) = (4096, 1024) a
# training step moves about 15 tensor sizes (the statistics passes, xc, y and dx).
_BLOCK_ELEMENTS = 1 << 14


def _sample_blocks(n: int, row_len: int) -> tuple[int, list[slice]]:
    """Split ``n`` samples of ``row_len`` values each into blocks of about ``_BLOCK_ELEMENTS``.

    Returns ``(tile_rows, blocks)``: the slices of axis 0 (the last block may be shorter) and the
    height of the coefficient tiles (``_per_position``) that go with them: a block's height, or
    1 when there is only one block (small arrays: building a tile would cost more than it saves).
    """
    rows = max(1, min(n, _BLOCK_ELEMENTS // max(1, row_len)))
    blocks = [slice(i, min(i + rows, n)) for i in range(0, n, rows)]
    return (rows if len(blocks) > 1 else 1), blocks


def _per_position(v: np.ndarray, s: int, rows: int, dtype: np.dtype) -> np.ndarray:
    """``(C,)`` per-channel values -> ``(rows, C * S)``: one value per element of a block of
    ``rows`` samples (see ``_sample_blocks``), each sample being a row of ``C * S`` values.

    Speed: an element-wise operation between a block and this same-shape array is one flat
    vectorised loop. Broadcasting a ``(C * S,)`` row over the block instead costs 1.5x as much
    for short rows (measured at (4096, 1024)), and broadcasting a ``(C, 1)`` column over
    ``(N, C, S)`` runs a short inner loop per (sample, channel) pair, 2-5x slower for small S.
    """
    row = v.astype(dtype) if s == 1 else np.repeat(v.astype(dtype), s)   # s == 0: an empty row
    return row[None, :] if rows == 1 else np.tile(row, (rows, 1))


def _centre(x3: np.ndarray, shift: np.ndarray, dtype: np.dtype,
            reuse: TunedCache | None) -> np.ndarray:
    """``x3 - shift`` per channel, ``(N, C, S)`` in ``dtype``, written into ``reuse.xc`` if it fits."""
    if reuse is not None and reuse.xc.shape == x3.shape and reuse.xc.dtype == dtype \
            and reuse.xc.flags.c_contiguous and not np.may_share_memory(reuse.xc, x3):
        xc = reuse.xc
    else:
        xc = np.empty(x3.shape, dtype)
    x2, xc2 = _rows(x3), _rows(xc)
    tile_rows, blocks = _sample_blocks(*xc2.shape)
    shift_ = _per_position(shift, x3.shape[2], tile_rows, dtype)
    for block in blocks:
        np.subtract(x2[block], shift_[: block.stop - block.start], out=xc2[block], dtype=dtype)
    return xc


_CHUNK = 64   # samples per partial sum in _sum_per_channel
_PILOT_FRACTION = 8   # the shift of the two-pass statistics is the mean of the first N / 8 samples


def _sum_per_channel(a3: np.ndarray, b3: np.ndarray | None = None,
                     dtype: np.dtype | None = None) -> np.ndarray:
    """``sum(a3)`` (or ``sum(a3 * b3)``) over samples and positions, per channel: ``(C,)`` float64.

    Accuracy at float32 speed: partial sums over chunks of ``_CHUNK`` samples run in the arrays'
    dtype (one ``np.einsum`` over a ``(chunks, _CHUNK, C, S)`` view), then the chunk sums are added
    in float64. A single float32 running sum over 100 000 values near 1e4 is off by ~700 standard
    deviations of std-1e-2 data; chunked, by ~0.01. Summing in float64 directly costs 4-6x more.
    ``dtype`` sets the dtype of the partial sums (float32 for float16 input).
    """
    n, c, s = a3.shape
    if n <= _CHUNK:                       # one chunk: a single call (small batches are call-bound)
        total = np.einsum("ncs->c", a3, dtype=dtype) if b3 is None else np.einsum("ncs,ncs->c", a3, b3)
        return total.astype(np.float64)
    whole = (n // _CHUNK) * _CHUNK
    chunks = lambda a: a[:whole].reshape(n // _CHUNK, _CHUNK, c, s)
    if b3 is None:
        total = np.einsum("bkcs->bc", chunks(a3), dtype=dtype).sum(axis=0, dtype=np.float64)
        return total + np.einsum("ncs->c", a3[whole:], dtype=dtype)
    total = np.einsum("bkcs,bkcs->bc", chunks(a3), chunks(b3)).sum(axis=0, dtype=np.float64)
    return total + np.einsum("ncs,ncs->c", a3[whole:], b3[whole:])


def _batch_statistics(x3: np.ndarray, cdt: np.dtype, reuse: TunedCache | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training statistics of ``x3`` ``(N, C, S)``: ``(xc, delta, mean, var)``.

    ``xc = x3 - shift`` ``(N, C, S)`` in ``cdt``; ``delta = mean - shift``, ``mean`` and the biased
    ``var`` are ``(C,)`` float64.

    Two passes, with a correction (Chan, Golub & LeVeque's "corrected two-pass" algorithm),
    accurate for data with a large offset and a small spread (float32 values near 1e4 with
    std 1e-2), where the textbook mean(x^2) - mean(x)^2 returns noise or a negative number:
    pass 1: ``shift``, a rough mean rounded to the compute dtype: the mean of the first
            1/_PILOT_FRACTION of the samples (reading all of x would cost a full pass);
    pass 2: centre, xc = x - shift; then delta = mean(xc) is what is left of the mean in xc,
            mean = shift + delta and var = mean(xc^2) - delta^2.
    The shift only has to be near the mean, not equal to it: delta^2 cancels against
    mean(xc^2) and costs about log2(1 + delta^2 / var) bits, and a mean of 1/8 of the
    samples is at most sqrt(8 - 1) = 2.6 standard deviations from the mean of all of them
    (Cauchy-Schwarz), whatever their order: at most 3 bits of float32's 24, where the
    textbook formula loses all of them on such data.
    """
    s = x3.shape[2]
    count = max(x3.shape[0] * s, 1)                           # an empty batch has no statistics
    pilot = x3[: -(-x3.shape[0] // _PILOT_FRACTION)]          # ceil(N / 8) samples, a view
    shift = (_sum_per_channel(pilot, dtype=cdt) / max(pilot.shape[0] * s, 1)).astype(cdt)
    xc = _centre(x3, shift, cdt, reuse)
    delta = _sum_per_channel(xc) / count                      # float64
    sum_sq = _sum_per_channel(xc, xc)
    mean = shift + delta
    special = not math.isfinite(sum_sq.sum())
    if special:
        # One check for every special case: the sum of squares is inf or nan only when the
        # data hold inf / nan (an infinite shift makes every xc inf or nan too) or their
        # float32 squares overflow (|x - mean| > 1.8e19).
        if cdt == np.float32:   # the squares in float64 (inf / nan data: still nan)
            xc64 = xc.astype(np.float64)
            sum_sq = _sum_per_channel(xc64, xc64)
        if not np.isfinite(shift).all():
            # inf in the pilot samples: xc = x - inf holds no information, delta is nan;
            # the mean (inf, or nan with -inf or nan elsewhere) is the plain sum's
            mean = _sum_per_channel(x3, dtype=cdt) / count
    with np.errstate(invalid="ignore") if special else contextlib.nullcontext():
        var = np.maximum(sum_sq / count - delta * delta, 0.0)   # inf - inf: nan, no warning
    return xc, delta, mean, var


def _normalize(xc: np.ndarray, delta: np.ndarray, scale: np.ndarray, bias: np.ndarray | None,
               cdt: np.dtype) -> np.ndarray:
    """``y = (xc - delta) * scale + bias`` per channel: ``xc`` ``(N, C, S)`` -> ``y`` ``(N, C * S)``.

    Block by block (see ``_sample_blocks``): three in-cache operations cost about what two passes
    over memory do. Subtracting ``delta`` (rather than folding it into the bias) makes a constant
    channel give exactly the bias.
    """
    s = xc.shape[2]
    xc2 = _rows(xc)
    y = np.empty(xc2.shape, cdt)
    tile_rows, blocks = _sample_blocks(*y.shape)
    delta_ = _per_position(delta, s, tile_rows, cdt)
    scale_ = _per_position(scale, s, tile_rows, cdt)
    bias_ = None if bias is None else _per_position(bias, s, tile_rows, cdt)
    for block in blocks:
        out, k = y[block], block.stop - block.start
        np.subtract(xc2[block], delta_[:k], out=out)
        np.multiply(out, scale_[:k], out=out)
        if bias_ is not None:
            np.add(out, bias_[:k], out=out)
    return y


def forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    *,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
    reuse: TunedCache | None = None,
) -> tuple[np.ndarray, TunedCache]:
    """``bncourse.numpy.batchnorm_forward``, tuned: same arguments, results and errors.

    ``x`` ``(N, C, *spatial)`` -> ``(y, cache)``, ``y`` like ``x``. ``reuse``: optional cache of an
    earlier call that is no longer needed (e.g. the previous training step's, after its backward).
    Its centred-input array is overwritten and becomes this call's, which saves one full-size
    allocation (fresh large arrays cost page faults). ``BatchNorm`` passes its previous cache here.
    """
    check_forward(x, weight, bias, running_mean, running_var, training=training, momentum=momentum,
                  eps=eps, num_batches_tracked=num_batches_tracked)
    cdt = compute_dtype(x.dtype, eps)
    x3 = as_ncs(x)
    if training:
        xc, delta, mean, var = _batch_statistics(x3, cdt, reuse)
        update_running_stats(running_mean, running_var, mean, var, x3.shape[0] * x3.shape[2],
                             momentum, num_batches_tracked)
    else:
        assert running_mean is not None and running_var is not None
        xc = _centre(x3, running_mean.astype(cdt), cdt, reuse)
        delta = np.zeros(x3.shape[1])
        var = running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    y = _normalize(xc, delta, invstd if weight is None else invstd * weight, bias, cdt)
    with np.errstate(over="ignore"):       # the variance of huge float32 data is inf in float32
        var_c = var.astype(cdt)
    cache = TunedCache(
        xc=xc, delta=delta.astype(cdt), var=var_c, invstd=invstd.astype(cdt), eps=float(eps),
        weight=None if weight is None else weight.astype(cdt), has_bias=bias is not None,
        training=training, x_shape=tuple(x.shape), x_dtype=x.dtype,
        weight_dtype=param_dtype(weight, bias, cdt),
    )
    return y.astype(x.dtype, copy=False).reshape(x.shape), cache


def backward(dy: np.ndarray, cache: TunedCache
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``bncourse.numpy.batchnorm_backward``, tuned: ``dy`` like ``x`` -> ``(dx, dweight, dbias)``.

    The same compact formula, ``dx = weight * invstd / m * (m * dy - dbias - x_hat * dweight)``
    in training, read from the saved centred input ``xc`` rather than ``x_hat``.
    """
    dy3 = grad_output(dy, cache.x_shape, cache.xc.dtype)
    m = cache.m
    invstd = cache.invstd.astype(np.float64)
    delta = cache.delta.astype(np.float64)
    gamma = np.ones_like(invstd) if cache.weight is None else cache.weight.astype(np.float64)

    # The two reductions over the batch (and spatial) axes, read straight from the saved centred
    # input: x_hat = (xc - delta) * invstd, so sum(dy * x_hat) = invstd * (sum(dy*xc) - delta*sum(dy)).
    dbias = _sum_per_channel(dy3)
    dweight = invstd * (_sum_per_channel(dy3, cache.xc) - delta * dbias)
    grads = param_grads(dweight, dbias, cache.weight is not None, cache.has_bias, cache.weight_dtype)

    a = gamma * invstd                                  # dx = a * dy (+ the projection in training)
    project = cache.training and m > 0                  # batch statistics: dx is projected
    if project and cache.eps < _OVERFLOW_EPS:
        # invstd**2 (in b) may overflow float64: the textbook form through x_hat instead
        dx3 = (a[:, None] * (dy3 - (dbias / m)[:, None] - cache.x_hat * (dweight / m)[:, None]))
        return (dx3.astype(cache.x_dtype).reshape(cache.x_shape),) + grads
    # dx = a*dy - a/m*dbias - a/m * x_hat * dweight, with x_hat = (xc - delta) * invstd:
    #    = a*dy + b*xc + c,   b = -a*invstd*dweight/m,   c = -a*dbias/m - b*delta.
    b = -a * invstd * dweight / m if project else None
    c = -a * dbias / m - b * delta if project else None
    dx = _multiply_add(dy3, a, cache.xc, b, c)
    return (dx.astype(cache.x_dtype, copy=False).reshape(cache.x_shape),) + grads


def _multiply_add(dy3: np.ndarray, a: np.ndarray, xc: np.ndarray, b: np.ndarray | None,
                  c: np.ndarray | None) -> np.ndarray:
    """``a * dy + b * xc + c`` per channel (``a * dy`` when ``b`` is None): ``(N, C, S)`` arrays and
    ``(C,)`` float64 coefficients -> ``(N, C * S)`` in ``xc``'s dtype.

    The per-channel coefficients are computed once; the full-size work is multiply-adds into
    ``dx``, block by block with one small scratch array (see ``_sample_blocks``).
    """
    s, cdt = dy3.shape[2], xc.dtype
    dy2, xc2 = _rows(dy3), _rows(xc)
    dx = np.empty(dy2.shape, cdt)
    tile_rows, blocks = _sample_blocks(*dx.shape)
    a_ = _per_position(a, s, tile_rows, cdt)
    if b is not None:
        b_, c_ = _per_position(b, s, tile_rows, cdt), _per_position(c, s, tile_rows, cdt)
        scratch = np.empty((blocks[0].stop - blocks[0].start, dx.shape[1]), cdt)
    for block in blocks:
        out, k = dx[block], block.stop - block.start
        np.multiply(dy2[block], a_[:k], out=out)
        if b is not None:
            tmp = scratch[:k]
            np.multiply(xc2[block], b_[:k], out=tmp)
            np.add(out, tmp, out=out)
            np.add(out, c_[:k], out=out)
    return dx
