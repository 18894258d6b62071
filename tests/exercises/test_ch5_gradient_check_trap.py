"""Chapter 5's gradient-check trap: the reference passes, and each typical mistake gets its own message."""
from __future__ import annotations

import numpy as np
import pytest

from bncourse.exercises.chapters import ch5_backprop as trap
from bncourse.numpy import batchnorm_backward, batchnorm_forward


@pytest.fixture(scope="module")
def ex():
    return trap.gradient_check_exercise()


def _check_with(loss_grad, *, rtol=1e-5, atol=1e-7, h=1e-6):
    """A learner's check: loss given by its gradient function dL/dy = loss_grad(y), and its value."""
    def gradient_check(backward, x, gamma, beta):
        def loss(x_):
            return float(loss_grad.value(trap.bn_forward(x_, gamma, beta)))
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            numeric[idx] = (loss(xp) - loss(xm)) / (2 * h)
        dy = loss_grad(trap.bn_forward(x, gamma, beta))
        return bool(np.allclose(backward(dy, x, gamma), numeric, rtol=rtol, atol=atol))
    return gradient_check


def _loss(value, grad):
    grad.value = value
    return grad


SUM = _loss(lambda y: y.sum(), lambda y: np.ones_like(y))
MEAN = _loss(lambda y: y.mean(), lambda y: np.full_like(y, 1 / y.size))
SQUARES = _loss(lambda y: (y ** 2).sum(), lambda y: 2 * y)
CUBES = _loss(lambda y: (y ** 3).sum(), lambda y: 3 * y ** 2)


def test_backwards_are_what_they_claim():
    rng = np.random.default_rng(0)
    x, gamma, beta, dy = rng.normal(1, 2, (7, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=(7, 3))
    _, cache = batchnorm_forward(x, gamma, beta, None, None, training=True, eps=trap.EPS)
    np.testing.assert_allclose(trap.bn_backward(dy, x, gamma), batchnorm_backward(dy, cache)[0], rtol=1e-12, atol=1e-14)
    for wrong in (trap.backward_without_dmean, trap.backward_without_dvar, trap.backward_zero, trap.backward_unbiased):
        assert not np.allclose(wrong(dy, x, gamma), trap.bn_backward(dy, x, gamma), rtol=1e-5, atol=1e-7)
    # the trap itself: with dL/dy = 1 the true dx is zero, and the dσ²-less backward agrees with it
    ones = np.ones_like(x)
    assert np.abs(trap.bn_backward(ones, x, gamma)).max() < 1e-12
    assert np.abs(trap.backward_without_dvar(ones, x, gamma)).max() < 1e-12


def test_reference_and_solution_pass(ex):
    assert ex.check(trap.gradient_check_reference).passed
    assert ex.check(ex.solution_function({"bn_forward": trap.bn_forward})).passed
    assert ex.check(_check_with(CUBES)).passed       # any loss whose dL/dy is not in span{1, x_hat} works


@pytest.mark.parametrize("loss", [SUM, MEAN], ids=["sum", "mean"])
def test_constant_upstream_gradient_is_the_trap(ex, loss):
    fb = ex.check(_check_with(loss))
    assert not fb.passed and "dL/dσ²" in fb.message and "gradient-check trap" in fb.message


def test_loss_in_the_span_of_one_and_xhat(ex):
    fb = ex.check(_check_with(SQUARES))
    assert not fb.passed and "returns `dx = 0`" in fb.message and "sum(y**2)" in fb.message


def test_loose_tolerance(ex):
    fb = ex.check(_check_with(CUBES, rtol=0.2, atol=1e-3))
    assert not fb.passed and "unbiased variance" in fb.message and "too loose" in fb.message


def test_check_that_compares_nothing(ex):
    fb = ex.check(lambda backward, x, gamma, beta: True)
    assert not fb.passed and "drops the `dL/dμ` term" in fb.message


def test_check_that_rejects_a_correct_backward(ex):
    # a wrong sign of the upstream gradient passed to backward
    def check(backward, x, gamma, beta):
        g = np.random.default_rng(1).normal(size=x.shape)
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += 1e-6
            xm[idx] -= 1e-6
            numeric[idx] = (np.sum(g * trap.bn_forward(xp, gamma, beta))
                            - np.sum(g * trap.bn_forward(xm, gamma, beta))) / 2e-6
        return bool(np.allclose(backward(-g, x, gamma), numeric, rtol=1e-5, atol=1e-7))
    fb = ex.check(check)
    assert not fb.passed and "rejects a **correct** backward" in fb.message


def test_a_non_bool_result_is_named(ex):
    fb = ex.check(lambda backward, x, gamma, beta: 1.0)
    assert not fb.passed and "Return `True` or `False`" in fb.message
