"""bncourse.numpy on NumPy views and IEEE specials, against torch.nn (float64 at 1e-10).

Negative strides, Fortran order, read-only and broadcast (stride-0) arrays, empty spatial
dimensions with N > 0, inf / nan / huge values, eps below float32's range, and torch's order of
the counter increment and the argument checks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import bncourse.numpy as bnp
from tolerances import FLOAT64_PARITY

torch.set_num_threads(1)


def _torch_reference(x, w, b, rm, rv, dy, training, momentum=0.1, eps=1e-5):
    xt = torch.from_numpy(np.array(x, dtype=np.float64)).requires_grad_()   # a writable copy
    wt = torch.from_numpy(w.copy()).requires_grad_()
    bt_ = torch.from_numpy(b.copy()).requires_grad_()
    rmt, rvt = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    y = F.batch_norm(xt, rmt, rvt, wt, bt_, training, momentum, eps)
    grads = torch.autograd.grad(y, (xt, wt, bt_), torch.from_numpy(np.ascontiguousarray(dy)))
    return y.detach(), grads, rmt, rvt


def _views(rng):
    base = rng.standard_normal((4, 3, 5))
    ro = base.copy()
    ro.setflags(write=False)
    return {
        "negative_batch": base[::-1],
        "negative_channels": base[:, ::-1],
        "negative_all": base[::-1, ::-1, ::-1],
        "fortran": np.asfortranarray(base),
        "read_only": ro,
        "broadcast": np.broadcast_to(rng.standard_normal((1, 3, 5)), (4, 3, 5)),
        "transposed": rng.standard_normal((5, 3, 4)).transpose(2, 1, 0),
        "stepped": rng.standard_normal((4, 6, 10))[:, ::2, ::2],
        # cf. torch's test_batchnorm_non_contig_cpu
        "spatial_transposed": rng.standard_normal((4, 3, 5, 6)).transpose(0, 1, 3, 2),
        "channels_from_axis_2": rng.standard_normal((4, 5, 3, 6)).transpose(0, 2, 1, 3),
    }


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", sorted(_views(np.random.default_rng(0))))
def test_numpy_views_match_torch(kind, training):
    rng = np.random.default_rng(1)
    x = _views(rng)[kind]
    dy_base = rng.standard_normal(x.shape)
    dy = dy_base[::-1].copy()[::-1] if kind != "read_only" else dy_base   # dy: negative strides too
    w, b = rng.standard_normal(3) + 1.0, rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    y_ref, (dx_ref, dw_ref, db_ref), rm_ref, rv_ref = _torch_reference(x, w, b, rm, rv, dy, training)
    rm_ours, rv_ours = rm.copy(), rv.copy()
    y, cache = bnp.batchnorm_forward(x, w, b, rm_ours, rv_ours, training=training)
    dx, dw, db = bnp.batchnorm_backward(dy, cache)
    for got, want in ((y, y_ref), (dx, dx_ref), (dw, dw_ref), (db, db_ref), (rm_ours, rm_ref),
                      (rv_ours, rv_ref)):
        assert_close(torch.from_numpy(np.ascontiguousarray(got)), want, **FLOAT64_PARITY)
    assert y.flags.c_contiguous and dx.flags.c_contiguous


@pytest.mark.parametrize("shape", [(2, 3, 0), (3, 2, 0, 4), (2, 3, 4, 0, 2)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_empty_spatial_dimensions_with_samples(shape, training):
    layer = bnp.BatchNorm(shape[1], dtype=np.float64).train(training)
    ref = torch.nn.BatchNorm1d(shape[1], dtype=torch.float64).train(training)
    x = np.zeros(shape)
    y = layer.forward(x)
    y_ref = ref(torch.from_numpy(x)) if len(shape) == 3 else None
    assert y.shape == shape
    dx = layer.backward(np.zeros(shape))
    assert dx.shape == shape
    assert np.all(layer.grad_weight == 0) and np.all(layer.grad_bias == 0)
    assert int(layer.num_batches_tracked) == int(training)
    assert np.all(layer.running_mean == 0) and np.all(layer.running_var == 1)
    if y_ref is not None:
        assert int(ref.num_batches_tracked) == int(layer.num_batches_tracked)


def test_counter_is_incremented_before_the_batch_check_like_torch():
    layer = bnp.BatchNorm(3, dtype=np.float64)
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer.forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        ref(torch.ones(1, 3, dtype=torch.float64))
    assert int(layer.num_batches_tracked) == int(ref.num_batches_tracked) == 1


def test_inf_nan_and_huge_values_like_torch():
    x = np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32)
    x[0, 0] = np.inf                   # the pilot samples hold +inf: mean +inf, var nan
    x[8, 1] = np.inf                   # +inf outside the pilot
    x[3, 2] = np.nan
    x[:, 3] *= np.float32(1e25)        # squares overflow float32
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    rmt, rvt = torch.zeros(4), torch.ones(4)
    with np.errstate(invalid="ignore"):
        y, _ = bnp.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=1.0)
    yt = F.batch_norm(torch.from_numpy(x), rmt, rvt, None, None, True, 1.0)
    assert_close(torch.from_numpy(y[:, :3]), yt[:, :3], equal_nan=True)
    assert_close(torch.from_numpy(rm), rmt, equal_nan=True)
    assert rm[0] == rm[1] == np.inf and math.isnan(rm[2])
    # column 3: torch's float32 kernel gives 0 (its variance overflows); the truth is float64
    y64 = F.batch_norm(torch.from_numpy(x[:, 3:].astype(np.float64)), None, None, None, None, True)
    assert_close(torch.from_numpy(y[:, 3:]).double(), y64, rtol=1e-5, atol=1e-6)


def test_eps_below_float32_range_is_kept():
    x = np.full((4, 2), 3.0, np.float32)
    y, cache = bnp.batchnorm_forward(x, None, np.array([0.5, -1.0], np.float32), None, None,
                                     training=True, eps=1e-50)
    assert y.dtype == np.float32 and np.all(y == np.array([0.5, -1.0], np.float32))
    # variance ~1e-310: invstd**2 ~1e310 overflows float64, the backward must avoid forming it
    tiny = np.random.default_rng(3).standard_normal((6, 2)) * 1e-155
    dy = np.random.default_rng(4).standard_normal((6, 2))
    _, cache = bnp.batchnorm_forward(tiny, None, None, None, None, training=True, eps=1e-320)
    dx, _, _ = bnp.batchnorm_backward(dy, cache)
    xt = torch.from_numpy(tiny).requires_grad_()
    (dx_ref,) = torch.autograd.grad(F.batch_norm(xt, None, None, None, None, True, 0.1, 1e-320),
                                    xt, torch.from_numpy(dy))
    assert np.isfinite(dx).all()
    assert_close(torch.from_numpy(dx), dx_ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("training", [1, None, "yes"])
def test_training_must_be_a_bool(training):
    with pytest.raises(TypeError, match="training must be a bool"):
        bnp.batchnorm_forward(np.ones((4, 3)), None, None, np.zeros(3), np.ones(3),
                              training=training)


def test_first_complaint_is_torchs():
    # batch of one and a non-array weight: torch's Python-level batch check comes first
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bnp.batchnorm_forward(np.ones((1, 3)), [1.0, 1.0, 1.0], None, None, None, training=True)
    with pytest.raises(ValueError, match="eps must be positive"):
        bnp.batchnorm_forward(np.ones((4, 3)), "w", None, None, None, training=True, eps=0.0)
