"""BatchNorm in NumPy: the forward pass, the compact backward and the staged (chain-rule) backward.

Shapes: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``. Internally every array is viewed as
``(N, C, S)`` with ``S = prod(spatial)`` (``S = 1`` for ``(N, C)``), so that a per-channel
statistic is a reduction over axes 0 and 2, and ``m = N * S`` values enter each channel's mean.

Conventions are PyTorch's (``torch.nn.functional.batch_norm``, torch 2.13)::

    y = (x - mean) / sqrt(var + eps) * weight + bias         # biased batch variance in training
    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)   # unbiased

Like CS231n's ``layers.py``, the forward returns ``(y, cache)`` and the backward consumes the
cache. The cache holds references to arrays made by the forward; do not modify them in between.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union, overload

import numpy as np

from bncourse.numpy import _validate

__all__ = [
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_staged",
]


@dataclass
class BatchNormCache:
    """What the backward pass needs from the forward pass.

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
    weight: Optional[np.ndarray]   # (C,) gamma in the compute dtype, None without weight
    has_bias: bool
    training: bool                 # True: batch statistics, so the gradient flows through mean and var
    x_shape: Tuple[int, ...]
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


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is computed in float32 (like torch's CPU kernel); float32 and float64 as they are."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def _as_ncs(a: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, C, S)`` (a view when the memory layout allows it)."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


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


def _sample_blocks(n: int, row_len: int) -> Tuple[int, List[slice]]:
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
    row = np.repeat(v.astype(dtype), s) if s > 1 else v.astype(dtype)
    return row[None, :] if rows == 1 else np.tile(row, (rows, 1))


def _centre(x3: np.ndarray, shift: np.ndarray, dtype: np.dtype,
            reuse: Optional["BatchNormCache"]) -> np.ndarray:
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


def _sum_per_channel(a3: np.ndarray, b3: Optional[np.ndarray] = None,
                     dtype: Optional[np.dtype] = None) -> np.ndarray:
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


def batchnorm_forward(
    x: np.ndarray,
    weight: Optional[np.ndarray],
    bias: Optional[np.ndarray],
    running_mean: Optional[np.ndarray],
    running_var: Optional[np.ndarray],
    *,
    training: bool,
    momentum: Optional[float] = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: Optional[np.ndarray] = None,
    reuse: Optional[BatchNormCache] = None,
) -> Tuple[np.ndarray, BatchNormCache]:
    """BatchNorm forward pass, the NumPy twin of ``torch.nn.functional.batch_norm``.

    Args:
        x: ``(N, C)`` or ``(N, C, *spatial)``, float16/32/64.
        weight, bias: ``(C,)`` (gamma and beta) or None.
        running_mean, running_var: ``(C,)`` buffers or both None. In training they are updated
            **in place** (``running = (1 - momentum) * running + momentum * batch_stat``, with the
            *unbiased* batch variance); in evaluation they normalise the input.
        training: True normalises with the batch statistics (the biased variance), False with
            the running statistics (which must then be given).
        momentum: weight of the new batch statistic. ``None`` means a cumulative average: the
            factor is ``1 / num_batches_tracked`` after the increment, so it needs the counter.
        eps: added to the variance inside the square root; must be > 0 in training.
        num_batches_tracked: optional 0-d integer array (``np.array(0, dtype=np.int64)``). When
            given, it is incremented **in place** on every training call that updates running
            buffers (zero-size batches included, as torch's modules do); required with
            ``momentum=None``.
        reuse: optional cache of an earlier call that is no longer needed (e.g. the previous
            training step's, after its backward). Its centred-input array is overwritten and
            becomes this call's, which saves one full-size allocation (a speed-up: fresh large
            arrays cost page faults). ``BatchNorm`` passes its previous cache here.

    Returns:
        ``(y, cache)``: ``y`` has ``x``'s shape and dtype; ``cache`` feeds the backward functions.

    Raises:
        TypeError, ValueError, RuntimeError, NotImplementedError: with torch's wording (sizes
        written ``(1, 3)``), e.g. ``ValueError: Expected more than 1 value per channel when
        training, got input size (1, 3)``.

    A zero-size batch returns an empty output and leaves the running statistics unchanged (the
    counter is still incremented). A constant channel gives exactly ``bias``.
    """
    _validate.validate_forward(x, weight, bias, running_mean, running_var,
                               training=training, eps=eps)
    _validate.validate_num_batches_tracked(num_batches_tracked)
    update_buffers = training and running_mean is not None
    if update_buffers and momentum is None and num_batches_tracked is None:
        raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked")

    cdt = _compute_dtype(x.dtype)
    x3 = _as_ncs(x)
    n_channels, s = x3.shape[1], x3.shape[2]
    m = x3.shape[0] * s

    if training:
        # Two passes, with a correction (Chan, Golub & LeVeque's "corrected two-pass" algorithm),
        # accurate for data with a large offset and a small spread (float32 values near 1e4 with
        # std 1e-2), where the textbook mean(x^2) - mean(x)^2 returns noise or a negative number:
        # pass 1: `shift`, a rough mean rounded to the compute dtype: the mean of the first
        #         1/_PILOT_FRACTION of the samples (reading all of x would cost a full pass);
        # pass 2: centre, xc = x - shift; then delta = mean(xc) is what is left of the mean in xc,
        #         mean = shift + delta and var = mean(xc^2) - delta^2.
        # The shift only has to be near the mean, not equal to it: delta^2 cancels against
        # mean(xc^2) and costs about log2(1 + delta^2 / var) bits, and a mean of 1/8 of the
        # samples is at most sqrt(8 - 1) = 2.6 standard deviations from the mean of all of them
        # (Cauchy-Schwarz), whatever their order: at most 3 bits of float32's 24, where the
        # textbook formula loses all of them on such data.
        count = max(m, 1)                                         # an empty batch has no statistics
        pilot = x3[: -(-x3.shape[0] // _PILOT_FRACTION)]          # ceil(N / 8) samples, a view
        shift = (_sum_per_channel(pilot, dtype=cdt) / max(pilot.shape[0] * s, 1)).astype(cdt)
        xc = _centre(x3, shift, cdt, reuse)
        delta = _sum_per_channel(xc) / count                      # float64
        mean = shift + delta
        var = np.maximum(_sum_per_channel(xc, xc) / count - delta * delta, 0.0)
    else:
        assert running_mean is not None and running_var is not None
        shift = running_mean.astype(cdt)
        xc = _centre(x3, shift, cdt, reuse)
        delta = np.zeros(n_channels)
        var = running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)

    if update_buffers and num_batches_tracked is not None:
        num_batches_tracked += 1
    if update_buffers and m > 0:
        assert running_mean is not None and running_var is not None
        factor = momentum if momentum is not None else 1.0 / float(num_batches_tracked)
        running_mean[...] = (1.0 - factor) * running_mean + factor * mean
        running_var[...] = (1.0 - factor) * running_var + factor * var * (m / (m - 1))

    # y = (xc - delta) * (invstd * weight) + bias, block by block (see _sample_blocks): three
    # in-cache operations cost about what two passes over memory do. Subtracting delta (rather
    # than folding it into the bias) makes a constant channel give exactly the bias.
    scale = invstd if weight is None else invstd * weight
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

    cache = BatchNormCache(
        xc=xc,
        delta=delta.astype(cdt),
        var=var.astype(cdt),
        invstd=invstd.astype(cdt),
        eps=float(eps),
        weight=None if weight is None else weight.astype(cdt),
        has_bias=bias is not None,
        training=training,
        x_shape=tuple(x.shape),
        x_dtype=x.dtype,
        weight_dtype=(weight if weight is not None else bias if bias is not None else xc).dtype,
    )
    return y.astype(x.dtype, copy=False).reshape(x.shape), cache


def _grad_output(dy: np.ndarray, cache: BatchNormCache) -> np.ndarray:
    """Validate ``dy`` and view it as ``(N, C, S)`` in the compute dtype."""
    _validate.validate_grad_output(dy, cache.x_shape)
    return _as_ncs(dy).astype(cache.xc.dtype, copy=False)


def _param_grads(
    dweight: np.ndarray, dbias: np.ndarray, cache: BatchNormCache
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(C,)`` gradients in the parameters' dtype, None for an absent parameter."""
    return (
        None if cache.weight is None else dweight.astype(cache.weight_dtype),
        dbias.astype(cache.weight_dtype) if cache.has_bias else None,
    )


def batchnorm_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Compact BatchNorm backward.

    Args:
        dy: ``dL/dy``, the forward input's shape ``(N, C, *spatial)``.
        cache: from ``batchnorm_forward``.

    Returns:
        ``(dx, dweight, dbias)``: ``dx`` like ``x`` (shape and dtype); ``dweight``/``dbias``
        ``(C,)`` or None where the forward had no weight/bias.

    Training (per channel, sums over the ``m`` values of the channel)::

        dbias   = sum(dy)
        dweight = sum(dy * x_hat)
        dx      = weight * invstd / m * (m * dy - dbias - x_hat * dweight)

    i.e. ``dy`` scaled and then projected off span{1, x_hat}: ``sum(dx) = 0`` and
    ``sum(dx * x_hat) = 0``. Evaluation (constant statistics): ``dx = dy * weight * invstd``.
    """
    dy3 = _grad_output(dy, cache)
    cdt = cache.xc.dtype
    m = cache.m
    invstd = cache.invstd.astype(np.float64)
    delta = cache.delta.astype(np.float64)
    gamma = np.ones_like(invstd) if cache.weight is None else cache.weight.astype(np.float64)

    # The two reductions over the batch (and spatial) axes, read straight from the saved centred
    # input: x_hat = (xc - delta) * invstd, so sum(dy * x_hat) = invstd * (sum(dy*xc) - delta*sum(dy)).
    sum_dy = _sum_per_channel(dy3)
    sum_dy_xc = _sum_per_channel(dy3, cache.xc)
    dbias = sum_dy
    dweight = invstd * (sum_dy_xc - delta * sum_dy)

    s = dy3.shape[2]
    a = gamma * invstd                                  # dx = a * dy (+ the projection in training)
    project = cache.training and m > 0                  # batch statistics: dx is projected
    if project:
        # dx = a*dy - a/m*dbias - a/m * x_hat * dweight, with x_hat = (xc - delta) * invstd:
        #    = a*dy + b*xc + c,   b = -a*invstd*dweight/m,   c = -a*dbias/m - b*delta.
        # Per-channel coefficients are computed once in float64; the full-size work is
        # multiply-adds into dx, block by block with one small scratch array (see _sample_blocks).
        b = -a * invstd * dweight / m
        c = -a * dbias / m - b * delta
    dy2, xc2 = _rows(dy3), _rows(cache.xc)
    dx = np.empty(dy2.shape, cdt)
    tile_rows, blocks = _sample_blocks(*dx.shape)
    a_ = _per_position(a, s, tile_rows, cdt)
    if project:
        b_, c_ = _per_position(b, s, tile_rows, cdt), _per_position(c, s, tile_rows, cdt)
        scratch = np.empty((blocks[0].stop - blocks[0].start, dx.shape[1]), cdt)
    for block in blocks:
        out, k = dx[block], block.stop - block.start
        np.multiply(dy2[block], a_[:k], out=out)
        if project:
            tmp = scratch[:k]
            np.multiply(xc2[block], b_[:k], out=tmp)
            np.add(out, tmp, out=out)
            np.add(out, c_[:k], out=out)
    dweight_out, dbias_out = _param_grads(dweight, dbias, cache)
    return dx.astype(cache.x_dtype, copy=False).reshape(cache.x_shape), dweight_out, dbias_out


@overload
def batchnorm_backward_staged(
    dy: np.ndarray, cache: BatchNormCache
) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]: ...


@overload
def batchnorm_backward_staged(
    dy: np.ndarray, cache: BatchNormCache, *, return_intermediates: bool
) -> Union[
    Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]],
    Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Dict[str, Optional[np.ndarray]]],
]: ...


def batchnorm_backward_staged(dy, cache, *, return_intermediates=False):
    """BatchNorm backward, one step of the chain rule per line (Ioffe & Szegedy 2015, Sec. 3).

    The same result as ``batchnorm_backward``, written as the paper derives it, for reading;
    it is about twice as slow (it materialises every intermediate).

    Args:
        dy: ``dL/dy``, shape ``(N, C, *spatial)``.
        cache: from ``batchnorm_forward``.
        return_intermediates: also return a dict of the intermediates: ``x_hat``, ``dxhat``
            (input shape), ``dvar``, ``dmean`` (``(C,)``; None in evaluation mode, where mean
            and variance are constants), ``dx`` (input shape), ``dgamma``, ``dbeta`` (``(C,)``).

    Returns:
        ``(dx, dweight, dbias)`` like ``batchnorm_backward`` (plus the dict if asked for).
    """
    dy = _grad_output(dy, cache)        # (N, C, S): sums over axes (0, 2) run over the batch
    axes = (0, 2)                       # and spatial positions, the paper's sum over i = 1..m
    m = max(cache.m, 1)                 # values per channel (an empty batch's sums are 0: keep 0/m = 0)
    gamma = 1.0 if cache.weight is None else cache.weight[:, None]   # (C, 1) broadcasts per channel
    x_mu = cache.xc - cache.delta[:, None]                           # x - mu
    var = cache.var[:, None]                                         # sigma^2
    std_inv = 1.0 / np.sqrt(var + cache.eps)                         # 1 / sqrt(sigma^2 + eps)
    x_hat = x_mu * std_inv                                           # the normalised input

    # dL/dx_hat = dL/dy * gamma
    dxhat = dy * gamma
    if cache.training:
        # dL/dsigma^2 = sum_i dL/dx_hat_i * (x_i - mu) * (-1/2) * (sigma^2 + eps)^(-3/2)
        dvar = np.sum(dxhat * x_mu, axis=axes) * -0.5 * std_inv[:, 0] ** 3
        # dL/dmu = sum_i dL/dx_hat_i * (-1 / sqrt(sigma^2 + eps))  +  dL/dsigma^2 * sum_i -2 (x_i - mu) / m
        dmean = (np.sum(dxhat * -std_inv, axis=axes)
                 + dvar * np.sum(-2.0 * x_mu, axis=axes) / m)
        # dL/dx_i = dL/dx_hat_i / sqrt(sigma^2 + eps) + dL/dsigma^2 * 2 (x_i - mu) / m + dL/dmu / m
        dx = dxhat * std_inv + dvar[:, None] * 2.0 * x_mu / m + dmean[:, None] / m
    else:
        # Evaluation: mu and sigma^2 are the running statistics, constants of the graph.
        dvar = dmean = None
        dx = dxhat * std_inv
    # dL/dgamma = sum_i dL/dy_i * x_hat_i
    dgamma = np.sum(dy * x_hat, axis=axes)
    # dL/dbeta = sum_i dL/dy_i
    dbeta = np.sum(dy, axis=axes)

    dx_out = dx.astype(cache.x_dtype, copy=False).reshape(cache.x_shape)
    dweight, dbias = _param_grads(dgamma, dbeta, cache)
    if not return_intermediates:
        return dx_out, dweight, dbias
    intermediates = {
        "x_hat": x_hat.reshape(cache.x_shape), "dxhat": dxhat.reshape(cache.x_shape),
        "dvar": dvar, "dmean": dmean, "dx": dx_out, "dgamma": dgamma, "dbeta": dbeta,
    }
    return dx_out, dweight, dbias, intermediates
