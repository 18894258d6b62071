"""Batch Renormalization (Ioffe 2017): ``bncourse.torch.BatchRenorm1d/2d`` and ``batch_renorm``.

* against a NumPy reference written from the paper's Algorithm 1 (forward, the moving averages and
  the paper's backward formulas, with r and d treated as constants), over several steps with and
  without clipping;
* exactly BatchNorm (``torch.nn.BatchNorm1d/2d``: outputs, gradients, buffers, eval) when
  ``r_max = 1, d_max = 0``, and while a warm-up schedule holds them there;
* ``gradcheck``/``gradgradcheck`` where r and d are clipped (locally constant, so the stop-gradient
  derivative is the true one), and the unclipped property ``dx = r * dx_BN``;
* evaluation with the running statistics; errors, state_dict, pickling; CUDA when present.
"""
from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.testing import assert_close

import bncourse.torch as bt

torch.set_num_threads(1)
TOL = {"rtol": 1e-10, "atol": 1e-10}
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


# --- the paper's Algorithm 1, in NumPy -----------------------------------------------------------

def paper_forward(x, gamma, beta, mu, running_var, r_max, d_max, eps, momentum):
    """One training step of Algorithm 1 for x (N, C, *spatial); returns y, r, d, new mu, new var, cache.

    sigma = sqrt(running_var + eps) stands for the paper's moving sigma (see bncourse.torch.renorm).
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mu_b = x.mean(axis=axes, keepdims=True)                                  # mu_B
    sigma_b = np.sqrt(((x - mu_b) ** 2).mean(axis=axes, keepdims=True) + eps)  # sigma_B
    sigma = np.sqrt(running_var.reshape(shape) + eps)
    r = np.clip(sigma_b / sigma, 1 / r_max, r_max)
    d = np.clip((mu_b - mu.reshape(shape)) / sigma, -d_max, d_max)
    x_hat = (x - mu_b) / sigma_b * r + d
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    var_b_unbiased = (sigma_b ** 2 - eps) * m / (m - 1)
    new_mu = mu + momentum * (mu_b.reshape(-1) - mu)
    new_var = running_var + momentum * (var_b_unbiased.reshape(-1) - running_var)
    cache = (x, x_hat, mu_b, sigma_b, r, gamma.reshape(shape), axes, m)
    return y, r.reshape(-1), d.reshape(-1), new_mu, new_var, cache


def paper_backward(dy, cache):
    """The paper's backward (Algorithm 1, r and d constants): dx, dgamma, dbeta."""
    x, x_hat, mu_b, sigma_b, r, gamma, axes, m = cache
    dxhat = dy * gamma
    dsigma_b = np.sum(dxhat * (x - mu_b) * (-r / sigma_b ** 2), axis=axes, keepdims=True)
    dmu_b = np.sum(dxhat * (-r / sigma_b), axis=axes, keepdims=True)
    dx = dxhat * r / sigma_b + dsigma_b * (x - mu_b) / (m * sigma_b) + dmu_b / m
    return dx, np.sum(dy * x_hat, axis=axes), np.sum(dy, axis=axes)


def _module(cls, c, dtype=torch.float64, device="cpu", seed=0, offset=0.0, **kwargs):
    m = cls(c, device=device, dtype=dtype, **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        m.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) + offset)
        m.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.1)
    return m


def _batch(shape, g, device="cpu", dtype=torch.float64):
    c = shape[1]
    view = (1, c) + (1,) * (len(shape) - 2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = x * (torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.2).view(view)
    return (x + torch.randn(c, generator=g, dtype=torch.float64).view(view) * 2).to(device, dtype)


@pytest.mark.parametrize("limits", [(3.0, 5.0), (1.5, 0.5), (1.1, 0.1)], ids=["paper", "mid", "tight"])
@pytest.mark.parametrize("cls, shape", [(bt.BatchRenorm1d, (8, 4)), (bt.BatchRenorm1d, (6, 4, 5)),
                                        (bt.BatchRenorm2d, (4, 3, 5, 5))], ids=["1d", "1d-3d", "2d"])
def test_matches_the_papers_algorithm_over_steps(cls, shape, limits):
    r_max, d_max = limits
    m = _module(cls, shape[1], r_max=r_max, d_max=d_max, momentum=0.3)
    g = torch.Generator().manual_seed(1)
    clipped = 0
    for step in range(4):
        x = _batch(shape, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64)
        w, b, mu, var = (t.detach().numpy().copy() for t in (m.weight, m.bias, m.running_mean,
                                                             m.running_var))
        y_ref, r, d, mu_ref, var_ref, cache = paper_forward(x.numpy(), w, b, mu, var, r_max, d_max,
                                                            m.eps, 0.3)
        clipped += int(np.sum(np.isclose(np.abs(d), d_max)) + np.sum(np.isclose(r, r_max))
                       + np.sum(np.isclose(r, 1 / r_max)))
        dx_ref, dw_ref, db_ref = paper_backward(dy.numpy(), cache)
        m.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        y = m(xi)
        y.backward(dy)
        for what, got, ref in (("y", y, y_ref), ("dx", xi.grad, dx_ref), ("dgamma", m.weight.grad, dw_ref),
                               ("dbeta", m.bias.grad, db_ref), ("running_mean", m.running_mean, mu_ref),
                               ("running_var", m.running_var, var_ref)):
            assert_close(got.detach(), torch.from_numpy(np.asarray(ref)), **TOL, msg=f"{what} step {step}")
    if limits != (3.0, 5.0):
        assert clipped > 0, "the case never clipped r or d: it does not test the clipping"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("ours_cls, ref_cls, shape", [
    (bt.BatchRenorm1d, nn.BatchNorm1d, (8, 4)), (bt.BatchRenorm1d, nn.BatchNorm1d, (6, 4, 5)),
    (bt.BatchRenorm2d, nn.BatchNorm2d, (4, 3, 5, 5))], ids=["1d", "1d-3d", "2d"])
def test_reduces_exactly_to_batchnorm(ours_cls, ref_cls, shape, momentum, device):
    """r_max = 1, d_max = 0: torch.nn.BatchNorm's outputs, gradients and buffers, train and eval."""
    ref = _module(ref_cls, shape[1], device=device, momentum=momentum)
    ours = ours_cls(shape[1], momentum=momentum, r_max=1.0, d_max=0.0, device=device, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(2)
    for training in (True, True, True, False, True, False):
        ref.train(training)
        ours.train(training)
        x = _batch(shape, g, device)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device)
        outs = []
        for m in (ref, ours):
            m.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            y = m(xi)
            y.backward(dy)
            outs.append((y, xi.grad, m.weight.grad, m.bias.grad))
        for a, b in zip(*outs):
            assert_close(b, a, **TOL)
        assert list(ours.state_dict()) == list(ref.state_dict())
        for k, v in ref.state_dict().items():
            assert_close(ours.state_dict()[k], v, **TOL, msg=k)


def test_warmup_schedule_is_batchnorm_then_relaxes():
    """linear_ramp: BatchNorm for the first steps, then r_max and d_max grow linearly."""
    r_sched, d_sched = bt.linear_ramp(1.0, 3.0, 2, 6), bt.linear_ramp(0.0, 5.0, 2, 4)
    assert [r_sched(s) for s in range(8)] == [1.0, 1.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    assert [d_sched(s) for s in range(6)] == [0.0, 0.0, 0.0, 2.5, 5.0, 5.0]
    paper = bt.paper_schedule()
    assert (paper["r_max"](5000), paper["r_max"](22500), paper["r_max"](40000)) == (1.0, 2.0, 3.0)
    assert (paper["d_max"](5000), paper["d_max"](15000), paper["d_max"](99999)) == (0.0, 2.5, 5.0)

    ours = _module(bt.BatchRenorm2d, 3, r_max=r_sched, d_max=d_sched, offset=3.0)
    ref = nn.BatchNorm2d(3, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(3)
    seen = []
    for step in range(6):
        seen.append(ours.limits())
        x = _batch((4, 3, 3, 3), g)
        y, y_bn = ours(x), ref(x)
        if step <= 2:
            assert_close(y, y_bn, **TOL)          # warm-up: plain BatchNorm
        else:
            assert not torch.allclose(y, y_bn)    # relaxed: the running statistics now correct it
    assert seen == [(1.0, 0.0), (1.0, 0.0), (1.0, 0.0), (1.5, 2.5), (2.0, 5.0), (2.5, 5.0)]
    assert int(ours.num_batches_tracked) == 6


@pytest.mark.parametrize("device", DEVICES)
def test_eval_uses_the_running_statistics(device):
    m = _module(bt.BatchRenorm2d, 3, device=device).eval()
    x = _batch((4, 3, 5, 5), torch.Generator().manual_seed(4), device)
    before = copy.deepcopy(m.state_dict())
    v = lambda t: t.view(1, 3, 1, 1)  # noqa: E731
    expected = (x - v(m.running_mean)) / torch.sqrt(v(m.running_var) + m.eps) * v(m.weight) + v(m.bias)
    assert_close(m(x), expected, **TOL)
    for k, t in m.state_dict().items():
        assert torch.equal(t, before[k]), k


def _clipped_setup(seed):
    """Running statistics far from the batch's: r and d both sit at their bounds."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(5, 3, 4, generator=g, dtype=torch.float64) * 4 + 10).requires_grad_()
    w = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.full((3,), 0.01, dtype=torch.float64)
    return x, w, b, rm, rv


def test_gradcheck_and_gradgradcheck_with_r_and_d_constant():
    """Where r and d are clipped they are locally constant, so finite differences of the forward
    check the stop-gradient backward exactly; second derivatives too."""
    x, w, b, rm, rv = _clipped_setup(5)
    sigma = torch.sqrt(rv + 1e-5)
    xd = x.detach()
    r = torch.sqrt(xd.var((0, 2), unbiased=False) + 1e-5) / sigma
    d = (xd.mean((0, 2)) - rm) / sigma
    assert bool((r > 2.0).all()) and bool((d.abs() > 1.0).all())   # both clipped at r_max=2, d_max=1

    def f(x, w, b):
        return bt.batch_renorm(x, rm.clone(), rv.clone(), w, b, True, 0.1, 1e-5, r_max=2.0, d_max=1.0)

    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


def test_unclipped_gradient_is_r_times_batchnorms():
    """With r and d free (no clipping) and constant in the backward, dx = r * dx_BN per channel."""
    g = torch.Generator().manual_seed(6)
    x = _batch((6, 3, 4), g).requires_grad_()
    rm = torch.randn(3, generator=g, dtype=torch.float64)
    rv = torch.rand(3, generator=g, dtype=torch.float64) + 1
    dy = torch.randn(x.shape, generator=g, dtype=torch.float64)
    y = bt.batch_renorm(x, rm.clone(), rv.clone(), None, None, True, 0.1, 1e-5, r_max=100.0, d_max=100.0)
    (dx,) = torch.autograd.grad(y, x, dy)
    y_bn = nn.functional.batch_norm(x, None, None, training=True)
    (dx_bn,) = torch.autograd.grad(y_bn, x, dy)
    r = torch.sqrt(x.detach().var((0, 2), unbiased=False) + 1e-5) / torch.sqrt(rv + 1e-5)
    assert_close(dx, dx_bn * r.view(1, 3, 1), **TOL)


def test_errors_state_dict_pickle_and_repr():
    m = bt.BatchRenorm2d(3, r_max=bt.linear_ramp(1.0, 3.0, 10, 20), d_max=2.0)
    assert repr(m) == ("BatchRenorm2d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, "
                       "track_running_stats=True, r_max=linear_ramp(start=1.0, end=3.0, begin=10, "
                       "finish=20), d_max=2.0)")
    with pytest.raises(ValueError, match=r"^expected 4D input \(got 3D input\)$"):
        m(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"^expected 2D or 3D input \(got 4D input\)$"):
        bt.BatchRenorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        bt.BatchRenorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="r_max >= 1 and d_max >= 0"):
        bt.BatchRenorm1d(3, r_max=0.5)(torch.randn(4, 3))
    with pytest.raises(RuntimeError, match="running_mean should contain 4 elements not 3"):
        bt.BatchRenorm1d(3)(torch.randn(5, 4))
    with pytest.raises(ValueError, match="track_running_stats must be True"):
        bt.BatchRenorm2d(3, 1e-5, 0.1, True, False)
    sig = lambda cls: [(p.name, p.kind, p.default)  # noqa: E731
                       for p in inspect.signature(cls.__init__).parameters.values()]
    assert sig(bt.BatchRenorm2d)[:-2] == sig(nn.BatchNorm2d)   # BatchNorm's, then r_max, d_max
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        bt.batch_renorm(torch.randn(4, 3), None, None, training=True)
    bn = nn.BatchNorm2d(3)
    assert list(m.state_dict()) == list(bn.state_dict())
    m.load_state_dict(bn.state_dict())
    x = torch.randn(4, 3, 2, 2)
    m(x)
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert clone.limits() == m.limits()
        assert_close(clone.eval()(x), m.eval()(x))


def test_empty_batch_is_batchnorms():
    """A zero-size batch: an empty output, buffers unchanged, the step still counted (BatchNorm's rule)."""
    ours, ref = _module(bt.BatchRenorm2d, 3), nn.BatchNorm2d(3, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(0, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    y = ours(x)
    assert y.shape == ref(x).shape == (0, 3, 4, 4)
    y.sum().backward()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert int(ours.num_batches_tracked) == 1


@pytest.mark.parametrize("xdtype", [torch.float16, torch.bfloat16], ids=["half", "bf16"])
def test_reduced_precision_input_is_batchnorms_when_reduced(xdtype):
    """Half/bf16 input with float32 parameters (BN's mixed path): output in the input dtype,
    within 1 ulp of torch.nn.BatchNorm when r_max = 1, d_max = 0."""
    ref = nn.BatchNorm2d(3)
    ours = bt.BatchRenorm2d(3, r_max=1.0, d_max=0.0)
    x = torch.randn(4, 3, 5, 5).to(xdtype)
    y = ours(x)
    assert y.dtype == xdtype
    tol = 2 ** -10 if xdtype == torch.float16 else 2 ** -7
    assert_close(y, ref(x), rtol=tol, atol=tol)
    assert_close(ours.running_var, ref.running_var)
