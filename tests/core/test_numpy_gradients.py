"""Gradients of bncourse.numpy: finite differences, staged == compact, and properties.

* ``gradcheck_batchnorm`` (centred differences, float64) on the compact and staged backward,
  training and evaluation, with and without affine parameters, ranks 2 to 5;
* the checker itself fails, naming the worst element, on a wrong backward;
* Hypothesis: per-channel output mean == beta and variance == gamma^2 sigma^2 / (sigma^2 + eps);
  sum(dx) == 0 and sum(dx * x_hat) == 0 per channel; staged == compact.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.numpy import (
    batchnorm_backward,
    batchnorm_backward_staged,
    batchnorm_forward,
    check_gradient,
    gradcheck_batchnorm,
    numerical_gradient,
)

SHAPES = [(6, 3), (3, 2, 4), (2, 3, 2, 3), (2, 2, 2, 2, 2), (2, 1)]


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_staged],
                         ids=["compact", "staged"])
@pytest.mark.parametrize("affine", ["weight_and_bias", "weight_only", "none"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck(shape, training, affine, backward):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 0.5
    weight = rng.uniform(0.5, 2.0, c) if affine != "none" else None
    bias = rng.standard_normal(c) if affine == "weight_and_bias" else None
    reports = gradcheck_batchnorm(x, weight, bias, training=training,
                                  running_mean=rng.standard_normal(c),
                                  running_var=rng.uniform(0.5, 2.0, c), backward=backward)
    assert [r.name for r in reports] == ["x"] + (["weight"] if weight is not None else []) + (
        ["bias"] if bias is not None else [])
    assert all(r.passed for r in reports)


def test_gradcheck_reports_the_worst_element_of_a_wrong_backward():
    """A backward that forgets the dL/dmu term must fail, and the message must say where."""
    def missing_mean_term(dy, cache):
        dx, dw, db = batchnorm_backward(dy, cache)
        mean_term = dy.mean(axis=0) * cache.invstd * cache.weight     # what the dL/dmu path removes
        return dx + mean_term, dw, db

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2))
    with pytest.raises(AssertionError) as info:
        gradcheck_batchnorm(x, rng.uniform(0.5, 2, 2), rng.standard_normal(2),
                            backward=missing_mean_term)
    message = str(info.value)
    assert "dx: MISMATCH; worst element (" in message and "analytic" in message and "numeric" in message
    assert "dweight" not in message and "dbias" not in message      # those are still right
    reports = gradcheck_batchnorm(x, rng.uniform(0.5, 2, 2), rng.standard_normal(2),
                                  backward=missing_mean_term, raise_on_failure=False)
    worst = reports[0]
    assert not worst.passed and abs(worst.analytic - worst.numeric) > 1e-3


def test_check_gradient_locates_a_single_wrong_element():
    numeric = np.arange(12.0).reshape(3, 4)
    analytic = numeric.copy()
    analytic[2, 1] += 0.5
    report = check_gradient(analytic, numeric, name="w")
    assert not report.passed and report.index == (2, 1)
    assert report.analytic == 9.5 and report.numeric == 9.0
    assert "dw: MISMATCH; worst element (2, 1): analytic 9.5, numeric 9" in str(report)


def test_numerical_gradient_of_a_known_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = numerical_gradient(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8)
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 0.0, x.astype(np.float32))


def test_staged_intermediates_follow_the_derivation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 2)) * 3 + 1
    w, b = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    _, cache = batchnorm_forward(x, w, b, None, None, training=True, eps=1e-5)
    dx, dw, db, inter = batchnorm_backward_staged(dy, cache, return_intermediates=True)
    axes = (0, 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    m = x.shape[0] * x.shape[2]
    np.testing.assert_allclose(inter["x_hat"], (x - mu) / np.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inter["dxhat"], dy * w[:, None])
    np.testing.assert_allclose(
        inter["dvar"], np.sum(inter["dxhat"] * (x - mu), axis=axes) * -0.5 * (var.ravel() + 1e-5) ** -1.5,
        rtol=1e-10)
    np.testing.assert_allclose(
        inter["dmean"], np.sum(-inter["dxhat"] / np.sqrt(var + 1e-5), axis=axes), rtol=1e-8, atol=1e-12)
    assert inter["dx"] is dx and dw is not None and db is not None
    np.testing.assert_allclose(inter["dgamma"], dw)
    np.testing.assert_allclose(inter["dbeta"], db)
    np.testing.assert_allclose(db, dy.sum(axis=axes))
    _, _, _, inter_eval = batchnorm_backward_staged(
        dy, batchnorm_forward(x, w, b, np.zeros(3), np.ones(3), training=False)[1],
        return_intermediates=True)
    assert inter_eval["dvar"] is None and inter_eval["dmean"] is None
    assert m == 8


def test_eval_backward_is_a_per_channel_scale():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    w, rm, rv = rng.uniform(0.5, 2, 3), rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    _, cache = batchnorm_forward(x, w, None, rm, rv, training=False, eps=1e-3)
    dx, dw, db = batchnorm_backward(dy, cache)
    np.testing.assert_allclose(dx, dy * (w / np.sqrt(rv + 1e-3))[:, None], rtol=1e-13)
    np.testing.assert_allclose(dw, np.sum(dy * ((x - rm[:, None]) / np.sqrt(rv + 1e-3)[:, None]),
                                          axis=(0, 2)), rtol=1e-12)
    assert db is None


# ----- Hypothesis properties -----------------------------------------------------------------

@st.composite
def batches(draw):
    """A float64 batch with N * prod(spatial) >= 2, random per-channel offsets and scales."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    if n * int(np.prod(spatial, dtype=int)) < 2:
        n = 2
    seed = draw(st.integers(0, 2**32 - 1))
    offset = draw(st.floats(-1e3, 1e3))
    log_scale = draw(st.floats(-2, 2))
    rng = np.random.default_rng(seed)
    shape = (n, c) + spatial
    x = offset + 10.0 ** log_scale * rng.standard_normal(shape) * rng.uniform(0.5, 2, c)[:, None].reshape(
        (1, c) + (1,) * len(spatial))
    weight = rng.uniform(-2, 2, c)
    bias = rng.standard_normal(c)
    dy = rng.standard_normal(shape)
    return x, weight, bias, dy


def _per_channel(a):
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


@settings(max_examples=50, deadline=None)
@given(batches())
def test_output_mean_and_variance_per_channel(batch):
    x, weight, bias, _ = batch
    eps = 1e-5
    y, _ = batchnorm_forward(x, weight, bias, None, None, training=True, eps=eps)
    xs, ys = _per_channel(x), _per_channel(y)
    var = xs.var(axis=1)
    np.testing.assert_allclose(ys.mean(axis=1), bias, atol=1e-9 * (1 + np.abs(weight)).max())
    np.testing.assert_allclose(ys.var(axis=1), weight ** 2 * var / (var + eps), rtol=1e-7, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(batches())
def test_dx_is_projected_off_one_and_x_hat(batch):
    """sum(dx) = 0 exactly; sum(dx * x_hat) = w * invstd * sum(dy * x_hat) * eps / (var + eps),
    which is 0 up to the eps / (var + eps) leak: x_hat's mean square is var / (var + eps), not 1."""
    x, weight, bias, dy = batch
    eps = 1e-5
    _, cache = batchnorm_forward(x, weight, bias, None, None, training=True, eps=eps)
    dx, _, _ = batchnorm_backward(dy, cache)
    dxs, xhat, dys = _per_channel(dx), _per_channel(cache.x_hat.reshape(x.shape)), _per_channel(dy)
    var = _per_channel(x).var(axis=1)
    scale = np.abs(weight) * cache.invstd * np.abs(dys).sum(axis=1) + 1e-300   # size of the terms
    assert np.all(np.abs(dxs.sum(axis=1)) <= 1e-10 * scale)
    leak = weight * cache.invstd * (dys * xhat).sum(axis=1) * eps / (var + eps)
    assert np.all(np.abs((dxs * xhat).sum(axis=1) - leak) <= 1e-10 * scale)
    # with eps negligible against the variance, the projection is exact to rounding
    _, cache = batchnorm_forward(x, weight, bias, None, None, training=True, eps=1e-300)
    dx, _, _ = batchnorm_backward(dy, cache)
    dxs, xhat = _per_channel(dx), _per_channel(cache.x_hat.reshape(x.shape))
    scale = np.abs(weight) * cache.invstd * np.abs(dys).sum(axis=1) + 1e-300
    assert np.all(np.abs((dxs * xhat).sum(axis=1)) <= 1e-10 * scale)


@settings(max_examples=50, deadline=None)
@given(batches(), st.booleans())
def test_staged_equals_compact(batch, training):
    x, weight, bias, dy = batch
    c = x.shape[1]
    _, cache = batchnorm_forward(x, weight, bias, np.zeros(c), np.ones(c), training=training,
                                 momentum=0.1)
    compact = batchnorm_backward(dy, cache)
    staged = batchnorm_backward_staged(dy, cache)
    for a, b, name in zip(compact, staged, ("dx", "dweight", "dbias")):
        scale = np.abs(b).max() + np.abs(dy).max() * np.abs(weight).max() * cache.invstd.max()
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10 * scale, err_msg=name)
