"""Every tolerance the differential tests use against ``torch.nn``, with the reason for each.

Two implementations of BatchNorm that are both correct still differ by rounding, and by how much
depends on the dtype *and* on how ill-conditioned the data is. A comparison therefore allows, per
element::

    |ours - torch| <= ATOL[dtype] + RTOL[dtype] * |torch| + SLACK[dtype] * scale

* ``RTOL`` / ``ATOL``: the rounding of the *result* to its dtype. Both sides compute in a wider
  type (float32 for float16/bfloat16 input; torch's CPU kernel accumulates float32 in float64) and
  round once at the end, so they may land on neighbouring values: 2 units in the last place (ulp)
  of the result's dtype. ``ATOL`` is that ulp at 1, for results that cancel to about 0.
* ``SLACK * scale``: the rounding *inside* the computation, amplified by the data's condition.
  ``scale`` is computed per channel by :func:`condition_scales` from the float64 batch: for the
  output it is ``|weight| * max|x| * invstd`` (``x - mean`` cancels ``max|x|`` down to ``sqrt(var)``,
  and the absolute rounding error of that difference is ``u * max|x|``, which ``invstd`` then
  magnifies). A constant channel (``var = 0``) is the extreme case: torch gives
  ``bias + rounding(x - mean) * weight / sqrt(eps)`` there, which is ``bias`` only when the mean is
  exact; bncourse gives exactly ``bias`` (documented in ``bncourse.torch.batch_norm``). The scale
  bounds torch's noise, so that case passes without a special branch. ``SLACK`` is 16 unit
  roundoffs of the *compute* dtype: the few roundings of a two-pass mean and variance, and of the
  affine step. For well-conditioned data (``max|x| * invstd`` about 3) this is 5e-15 in float64.

Non-finite values are compared exactly: where torch gives ``nan`` or ``±inf``, so must we, at the
same positions.

Memory layout: strides are compared on the dimensions of size > 1 only (a size-1 dimension's
stride never addresses memory, and torch itself sets it inconsistently).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# unit roundoff of each dtype (half the distance from 1 to the next number)
UNIT_ROUNDOFF = {
    torch.float64: 2.0 ** -53,
    torch.float32: 2.0 ** -24,
    torch.float16: 2.0 ** -11,
    torch.bfloat16: 2.0 ** -8,
}

# 2 ulp of the result dtype: both sides round a wider result once (see the module docstring)
RTOL = {dt: 4 * u for dt, u in UNIT_ROUNDOFF.items()}
ATOL = {dt: 4 * u for dt, u in UNIT_ROUNDOFF.items()}

# 16 unit roundoffs of the compute dtype per unit of condition (see the module docstring)
COMPUTE_DTYPE = {torch.float64: torch.float64, torch.float32: torch.float32,
                 torch.float16: torch.float32, torch.bfloat16: torch.float32}
SLACK = {dt: 16 * UNIT_ROUNDOFF[COMPUTE_DTYPE[dt]] for dt in UNIT_ROUNDOFF}

# float16/bfloat16 *parameters* (running statistics, weight grads) are rounded to their dtype once
# per step by both sides, and a running average carries that rounding into the next step: allow
# 2 ulp per step taken.
PER_STEP_PARAM_ULPS = 2

# bncourse.torch and bncourse.numpy against each other and torch at float64 on well-conditioned
# data (the existing parity suites): 1e-10, far above float64 rounding, far below any real bug.
FLOAT64_PARITY = {"rtol": 1e-10, "atol": 1e-10}


@dataclass
class Scales:
    """Per-channel condition scales, each a float64 array broadcasting against the quantity."""

    y: np.ndarray
    dx: np.ndarray
    dweight: np.ndarray
    dbias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


def condition_scales(x: np.ndarray, dy: np.ndarray | None, weight: np.ndarray | None,
                     mean: np.ndarray, var: np.ndarray, eps: float, batch_stats: bool,
                     dtype: torch.dtype | None = None) -> Scales:
    """Scales for :func:`allowed_error` from float64 copies of the step's tensors.

    ``x``, ``dy``: ``(N, C, *spatial)``; ``weight``, ``mean``, ``var``: ``(C,)`` (the statistics the
    step normalises with: batch or running). ``dtype`` (the input's): a variance in the subnormal
    range of its compute dtype is only known to the subnormal spacing, an absolute error that
    becomes the relative error ``spacing / (var + eps)`` of ``invstd`` (data of magnitude 1e-160 in
    float64, 1e-23 in float32); that is added, in units of the compute dtype's roundoff.
    """
    c = x.shape[1]
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = (1, c) + (1,) * (x.ndim - 2)
    with np.errstate(all="ignore"):
        amax = np.max(np.abs(x), axis=axes, initial=0.0) + np.abs(mean)
        invstd = 1.0 / np.sqrt(var + eps)
        w = np.ones(c) if weight is None else np.abs(weight)
        cond = amax * invstd                                       # max|x| / sqrt(var + eps)
        if dtype is not None:
            compute = COMPUTE_DTYPE[dtype]
            spacing = float(np.finfo(np.float64 if compute == torch.float64 else np.float32)
                            .smallest_subnormal)
            cond = cond + spacing / (var + eps) / UNIT_ROUNDOFF[compute]
        if not batch_stats:
            cond = np.maximum(cond, 1.0)
        dymax = np.zeros(c) if dy is None else np.max(np.abs(dy), axis=axes, initial=0.0)
        dysum = np.zeros(c) if dy is None else np.sum(np.abs(dy), axis=axes)
        n = max(1, x.size // max(c, 1))
        y = w * (cond + 1.0)
        dx = w * invstd * dymax * (cond + 1.0) ** 2
        dweight = dysum * (cond + 1.0)
        dbias = dysum
        rmean = amax
        rvar = amax * amax * n / max(n - 1, 1)
    fix = lambda a: np.nan_to_num(a, nan=np.inf, posinf=np.inf)  # noqa: E731
    return Scales(fix(y).reshape(shape), fix(dx).reshape(shape), fix(dweight), fix(dbias),
                  fix(rmean), fix(rvar))


def allowed_error(expected: np.ndarray, dtype: torch.dtype, scale: np.ndarray | float,
                  steps: int = 1, param: bool = False,
                  param_dtype: torch.dtype | None = None) -> np.ndarray:
    """Per-element allowance for ``|ours - expected|`` (see the module docstring).

    ``param_dtype``: float16/bfloat16 parameters take part in the computation rounded to their
    dtype (torch forms ``weight * invstd`` in it), so the slack is at least theirs.
    """
    if dtype not in RTOL:          # integer results (an empty integer batch): exact
        return np.zeros_like(np.asarray(expected, dtype=np.float64))
    rtol = RTOL[dtype] * (PER_STEP_PARAM_ULPS * steps if param else 1)
    slack = SLACK[dtype]
    if param_dtype is not None:
        slack = max(slack, 16 * UNIT_ROUNDOFF[param_dtype])
    with np.errstate(all="ignore"):
        return ATOL[dtype] + rtol * np.abs(expected) + slack * np.asarray(scale) * steps
