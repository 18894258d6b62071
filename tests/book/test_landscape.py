"""Tests of bncourse.landscape: line search, Definition 2.1 ICS and Theorem 4.1 (Santurkar et al. 2018)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bncourse.landscape import (LandscapeProbe, activation_drift, gradient_norms_at_init, internal_covariate_shift,
                                layer_gradient_norms,
                                line_search, theorem41)
from bncourse.normalizers import NoisyBatchNorm1d
from bncourse.recorders import ActivationRecorder, first_units

torch.set_num_threads(1)


class Quadratic(nn.Module):
    """f(theta) = 1/2 theta^T A theta (the input is ignored)."""

    def __init__(self, A: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A)
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.theta @ self.A @ self.theta


def identity_loss(out, y):
    return out


def spd(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.linspace(0.5, 7.0, n, dtype=torch.float64)
    return Q @ torch.diag(lam) @ Q.T, lam, Q


DUMMY = (torch.zeros(1), torch.zeros(1))


# ------------------------------------------------------------------ line search

@pytest.mark.parametrize("k", [0, 3, 5])
def test_beta_smoothness_of_a_quadratic_along_an_eigenvector_is_its_eigenvalue(k):
    A, lam, Q = spd(6)
    theta = 2.0 * Q[:, k]
    model = Quadratic(A, theta)
    lr = 0.05
    ls = line_search(model, identity_loss, *DUMMY, lr=lr)
    # g = lam theta, grad(theta - eta g) - g = -eta lam g  ->  ratio lam, loss (1 - eta lam)^2 f(theta)
    assert ls.beta_smoothness == pytest.approx(float(lam[k]), rel=1e-12)
    etas = np.array([0.5, 1, 2, 4]) * lr
    f0 = 0.5 * float(lam[k]) * 4.0
    np.testing.assert_allclose(ls.losses, (1 - etas * float(lam[k])) ** 2 * f0, rtol=1e-12)
    assert ls.loss0 == pytest.approx(f0, rel=1e-12)
    assert ls.grad_norm == pytest.approx(2.0 * float(lam[k]), rel=1e-12)
    np.testing.assert_allclose(ls.grad_diffs, etas * float(lam[k]) ** 2 * 2.0, rtol=1e-12)
    assert ls.loss_range == pytest.approx(ls.losses.max() - ls.losses.min())
    assert ls.grad_predictiveness == pytest.approx(ls.grad_diffs.max())


def test_beta_smoothness_of_a_quadratic_in_a_random_direction_is_a_rayleigh_ratio():
    A, lam, _ = spd(8, seed=1)
    theta = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ls = line_search(Quadratic(A, theta), identity_loss, *DUMMY, lr=0.01, multipliers=(1, 3))
    g = A @ theta
    expected = float((A @ g).norm() / g.norm())
    assert ls.beta_smoothness == pytest.approx(expected, rel=1e-12)
    assert float(lam.min()) < ls.beta_smoothness < float(lam.max())


def small_bn_net(seed: int = 0, norm=nn.BatchNorm1d) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), norm(8), nn.ReLU(), nn.Linear(8, 8), norm(8), nn.ReLU(),
                         nn.Linear(8, 3))


def batch(seed: int = 0, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_line_search_leaves_the_model_and_rng_untouched():
    model = small_bn_net()
    x, y = batch()
    model(x).sum().backward()  # some .grad that must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    line_search(model, F.cross_entropy, x, y, lr=0.5)
    internal_covariate_shift(model, F.cross_entropy, x, y, lr=0.5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training


def test_line_search_on_a_network_matches_a_direct_computation():
    model = small_bn_net(1)
    x, y = batch(1)
    ls = line_search(model, F.cross_entropy, x, y, lr=0.2, multipliers=(1.0,))
    params = list(model.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    with torch.no_grad():
        for p, gi in zip(params, g):
            p -= 0.2 * gi
    loss = F.cross_entropy(model(x), y)
    g2 = torch.autograd.grad(loss, params)
    diff = math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(g2, g)))
    assert ls.losses[0] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert ls.grad_diffs[0] == pytest.approx(diff, rel=1e-5)
    assert ls.distances[0] == pytest.approx(0.2 * ls.grad_norm, rel=1e-12)


def test_line_search_freezes_activation_noise():
    # with fresh noise at every forward pass the gradient would jump even for a tiny step
    model = small_bn_net(2, norm=NoisyBatchNorm1d)
    x, y = batch(2)
    ls = line_search(model, F.cross_entropy, x, y, lr=1e-7, multipliers=(1.0,))
    assert ls.grad_diffs[0] < 1e-4 * ls.grad_norm
    # ... and a probe on the same model without freezing would see different losses
    with torch.no_grad():
        assert float(F.cross_entropy(model(x), y)) != pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-4)


@pytest.mark.parametrize("kwargs, msg", [({"lr": 0.0}, "lr must be > 0"), ({"lr": float("nan")}, "finite"),
                                         ({"lr": 0.1, "multipliers": (1, -1)}, "positive"),
                                         ({"lr": 0.1, "multipliers": ()}, "non-empty")])
def test_line_search_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        line_search(small_bn_net(), F.cross_entropy, *batch(), **kwargs)


# ------------------------------------------------------------------ ICS, Definition 2.1

def test_ics_first_layer_is_zero_and_zero_learning_rate_gives_zero():
    model = small_bn_net(3)
    x, y = batch(3)
    r = internal_covariate_shift(model, F.cross_entropy, x, y, lr=0.3)
    assert r.l2.shape == r.cosine.shape == r.grad_norm.shape == (3,)
    assert r.l2[0] == 0.0 and r.cosine[0] == pytest.approx(1.0)
    assert np.all(r.l2[1:] > 1e-4)  # the later layers do see a shift
    r0 = internal_covariate_shift(model, F.cross_entropy, x, y, lr=0.0)
    np.testing.assert_allclose(r0.l2, 0.0, atol=1e-7)
    np.testing.assert_allclose(r0.cosine, 1.0, atol=1e-6)
    np.testing.assert_allclose(r0.grad_norm, r.grad_norm, rtol=1e-6)


def test_ics_of_a_two_layer_linear_net_matches_the_closed_form():
    # L = 1/(2n) ||X W1^T W2^T - T||^2 ; G2 = R^T H / n with H = X W1^T, R = H W2^T - T
    g = torch.Generator().manual_seed(4)
    X = torch.randn(20, 4, generator=g, dtype=torch.float64)
    T = torch.randn(20, 2, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)).double()

    def mse(out, t):
        return 0.5 * (out - t).pow(2).sum() / len(t)

    lr = 0.3
    W1, W2 = model[0].weight.detach().clone(), model[1].weight.detach().clone()

    def grads(W1, W2):
        H = X @ W1.T
        R = H @ W2.T - T
        return (R @ W2).T @ X / len(X), R.T @ H / len(X)

    G1, G2 = grads(W1, W2)
    _, G2p = grads(W1 - lr * G1, W2)
    r = internal_covariate_shift(model, mse, X, T, lr=lr)
    assert r.l2[1] == pytest.approx(float((G2 - G2p).norm()), rel=1e-10)
    cos = float((G2 * G2p).sum() / (G2.norm() * G2p.norm()))
    assert r.cosine[1] == pytest.approx(cos, rel=1e-10)
    assert r.grad_norm[1] == pytest.approx(float(G2.norm()), rel=1e-10)
    assert r.l2[1] > 1e-3


def test_ics_steps_bn_parameters_that_precede_the_layer():
    # BN's gamma/beta sit between Linear 1 and Linear 2; moving only them already shifts G_2
    model = small_bn_net(5)
    x, y = batch(5)
    for p in (model[0].weight, model[0].bias):
        p.requires_grad_(False)
    r = internal_covariate_shift(model, F.cross_entropy, x, y, lr=0.5, layers=[model[3]])
    assert r.l2[0] > 1e-5


def test_ics_rejects_a_foreign_layer():
    with pytest.raises(ValueError, match="no trainable .weight"):
        internal_covariate_shift(small_bn_net(), F.cross_entropy, *batch(), lr=0.1, layers=[nn.Linear(2, 2)])


# ------------------------------------------------------------------ probe over training

def test_probe_and_trace_record_at_the_chosen_steps_without_changing_training():
    x, y = batch(6, n=200)

    def run(with_probe: bool):
        model = small_bn_net(6, norm=NoisyBatchNorm1d)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        probe = LandscapeProbe(F.cross_entropy, 0.1, x, y, batch_size=32, every=3)
        trace = ActivationRecorder({"bn1": model[1]}, first_units(2), x=x[:20], at=[2, 3, 5], mode="current")
        torch.manual_seed(0)
        for step in range(1, 8):
            loss = F.cross_entropy(model(x[:64]), y[:64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if with_probe:
                probe(model, step)
                trace(model, step)
        return model, probe, trace

    m1, probe, trace = run(True)
    m2, _, _ = run(False)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)  # measuring did not perturb training (noise draws, BN buffers)
    assert probe.steps == [3, 6]
    assert len(probe.ics_l2) == 2 and probe.ics_l2[0].shape == (3,)
    assert trace.steps == [2, 3, 5]
    assert [r.shape for r in trace.records["bn1"]] == [(20, 2)] * 3
    assert activation_drift(trace.records["bn1"]) > 0
    np.testing.assert_allclose(np.array(probe.loss_max) - np.array(probe.loss_min), probe.loss_range)
    s = probe.summary()
    assert s["loss_range"] == pytest.approx(np.median(probe.loss_range))
    assert "ics_l2_layer3" in s


def test_activation_drift_is_the_mean_standardized_change_of_unit_means():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 3)) * np.array([1.0, 2.0, 4.0])
    shifts = np.array([[0.0, 0.0, 0.0], [0.5, 1.0, -2.0], [0.5, 3.0, 0.0]])
    records = [base - base.mean(0) + s for s in shifts]
    stds = base.std(0)
    expected = np.mean(np.abs(np.diff(shifts, axis=0)) / stds)
    assert activation_drift(records) == pytest.approx(expected, rel=1e-12)
    assert activation_drift([base, base]) == 0.0
    with pytest.raises(ValueError, match="at least 2 records"):
        activation_drift([base])
    with pytest.raises(ValueError, match="same U"):
        activation_drift([base, base[:, :2]])


def test_layer_gradient_norms_match_backward_and_leave_grad_alone():
    model = small_bn_net(3)
    x, y = batch(3)
    layers = [model[0], model[3]]
    norms = layer_gradient_norms(model, F.cross_entropy, x, y, layers)
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x), y).backward()
    np.testing.assert_allclose(norms, [model[0].weight.grad.norm().item(), model[3].weight.grad.norm().item()],
                               rtol=1e-5)
    assert layer_gradient_norms(model, F.cross_entropy, x, y).shape == (3,)  # default: every Linear
    with pytest.raises(ValueError, match="no trainable .weight"):
        layer_gradient_norms(model, F.cross_entropy, x, y, [nn.ReLU()])


# ------------------------------------------------------------------ Theorem 4.1

def head_network(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    W2 = torch.randn(n, 10, generator=g, dtype=torch.float64) / math.sqrt(n)
    W3 = torch.randn(10, 4, generator=g, dtype=torch.float64) / math.sqrt(10)
    target = torch.randint(0, 4, (64,), generator=g)
    return lambda z: F.cross_entropy(torch.relu(z @ W2) @ W3, target)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem41_holds_with_one_over_m_not_one_over_sqrt_m(seed):
    g = torch.Generator().manual_seed(seed)
    m, d, n = 64, 12, 6
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    W = torch.randn(n, d, generator=g, dtype=torch.float64)
    gamma = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.2
    beta = torch.randn(n, generator=g, dtype=torch.float64)
    r = theorem41(x @ W.T, gamma, beta, head_network(seed, n))
    assert r.m == m and r.lhs.shape == (n,)
    # the proof's coefficient 1/m: an identity, to float64 precision
    np.testing.assert_allclose(r.lhs, r.rhs, rtol=1e-9)
    # the printed 1/sqrt(m) subtracts sqrt(m) = 8 times too much of <g, yhat>^2: clearly different
    rel = np.abs(r.rhs_sqrt_m - r.lhs) / r.lhs
    assert rel.max() > 0.05
    # with 1/sqrt(m) the right side drops *below* the left side: the printed inequality is false
    assert np.all(r.rhs_sqrt_m < r.lhs)
    # and the normalized gradient is never larger than (gamma/sigma)^2 ||g||^2
    sigma = (x @ W.T).std(0, unbiased=False).numpy()
    assert np.all(r.lhs <= (gamma.numpy() / sigma) ** 2 * r.grad_sq + 1e-12)


def test_theorem41_in_float32():
    g = torch.Generator().manual_seed(9)
    y = torch.randn(64, 6, generator=g) * 3 + 1
    head = head_network(9, 6)
    r = theorem41(y, torch.ones(6), torch.zeros(6), lambda z: head(z.double()))
    np.testing.assert_allclose(r.lhs, r.rhs, rtol=1e-5)  # float32 through the BN layer


def test_theorem41_bad_input():
    with pytest.raises(ValueError, match="m >= 2"):
        theorem41(torch.zeros(1, 3), torch.ones(3), torch.zeros(3), lambda z: z.sum())
    with pytest.raises(ValueError, match="zero batch variance"):
        theorem41(torch.ones(4, 3), torch.ones(3), torch.zeros(3), lambda z: z.sum())
    with pytest.raises(ValueError, match="shape"):
        theorem41(torch.randn(4, 3), torch.ones(2), torch.zeros(3), lambda z: z.sum())


# ------------------------------------------------------------------ chapter 3: gradient norms at initialization

@pytest.fixture(scope="module")
def digits_batch():
    from bncourse.data import load_images

    d = load_images("digits", verbose=False)
    return torch.from_numpy(d.x_train[:256]), torch.from_numpy(d.y_train[:256])


@pytest.mark.parametrize("config, low, high", [
    (dict(activation="sigmoid", init=0.1), 0.0, 1e-4),          # vanishing (digits, 5 seeds: <= 3.5e-6)
    (dict(activation="sigmoid", init="glorot"), 0.0, 1e-4),     # vanishing with Glorot too (<= 3.1e-6)
    (dict(activation="tanh", init=0.3), 5.0, np.inf),           # growing towards the input (6.4 .. 8.3)
    (dict(activation="relu", init="he"), 0.1, 10.0),            # roughly flat (0.66 .. 1.2)
    (dict(activation="sigmoid", init=0.1, norm="bn"), 0.5, 3.0),  # flat with BN (1.18 .. 1.35)
], ids=["sigmoid-0.1", "sigmoid-glorot", "tanh-0.3", "relu-he", "sigmoid-0.1-bn"])
def test_chapter3_first_to_last_layer_gradient_ratio(digits_batch, config, low, high):
    """Chapter 3's claim, on 5 seeds: 10 sigmoid layers make the first layer's gradient vanish; BN keeps it flat."""
    x, y = digits_batch
    for seed in range(5):
        g = gradient_norms_at_init([64] + [100] * 10 + [10], x, y, seed=seed, **config)
        assert g.shape == (10,)
        assert low < g[0] / g[-1] < high, (seed, g[0] / g[-1])
