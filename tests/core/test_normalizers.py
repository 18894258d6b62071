"""Tests of bncourse.normalizers: noisy BN (Santurkar et al. 2018, App. A.2.1) and l_p normalization."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bncourse.normalizers import ActivationNoise, LpNorm1d, NoisyBatchNorm1d, frozen_noise

torch.set_num_threads(1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ ActivationNoise / NoisyBatchNorm1d

def test_noise_is_identity_in_eval():
    layer = ActivationNoise(5).eval()
    x = torch.randn(8, 5)
    assert layer(x) is x


def test_noise_forward_is_s_times_x_plus_m_with_the_drawn_noise():
    x = torch.randn(16, 7)
    out = ActivationNoise(7, generator=gen(3))(x)
    s, m = ActivationNoise(7, generator=gen(3)).sample(x)
    torch.testing.assert_close(out, s * x + m, rtol=0, atol=0)
    assert not torch.allclose(out, x)


def test_noise_moments_match_the_papers_distributions():
    # a (N, C) draw; per-unit parameters mu_j ~ U(-.5, .5), sigma_j ~ U(1, 1.25);
    # per-sample m ~ U(mu_j - .1, mu_j + .1), s ~ N(sigma_j, .1^2)
    n, c = 2000, 3000
    layer = ActivationNoise(c, generator=gen(0))
    s, m = layer.sample(torch.zeros(n, c, dtype=torch.float64))
    m_unit, s_unit = m.mean(0), s.mean(0)
    # the offsets: unit means spread uniformly over [-0.5, 0.5] (variance 1/12), within-unit width 0.2
    assert abs(float(m_unit.mean())) < 0.02
    assert float(m_unit.var()) == pytest.approx(0.5 ** 2 / 3, rel=0.08)
    assert float(m_unit.min()) > -0.52 and float(m_unit.max()) < 0.52
    assert float(m.var(0).mean()) == pytest.approx(0.1 ** 2 / 3, rel=0.03)
    assert float((m - m_unit).abs().max()) <= 0.1 + 0.01
    # the scales: unit means uniform on [1, 1.25] (mean 1.125, variance 0.25^2/12), within-unit std 0.1
    assert float(s_unit.mean()) == pytest.approx(1.125, abs=0.005)
    assert float(s_unit.var()) == pytest.approx(0.25 ** 2 / 12, rel=0.08)
    assert float(s_unit.min()) > 0.99 and float(s_unit.max()) < 1.26
    assert float(s.std(0).mean()) == pytest.approx(0.1, rel=0.03)


def test_noise_is_redrawn_every_step_and_differs_between_units():
    layer = ActivationNoise(4, generator=gen(1))
    x = torch.zeros(3000, 4)
    a, b = layer(x), layer(x)
    assert (a.mean(0) - b.mean(0)).abs().max() > 0.05  # new per-unit offsets at the next step
    assert a.mean(0).std() > 0.05  # units get different offsets


def test_noise_3d_input_draws_per_unit_and_treats_length_as_samples():
    layer = ActivationNoise(3, generator=gen(2))
    s, m = layer.sample(torch.zeros(50, 3, 40))
    assert s.shape == m.shape == (50, 3, 40)
    # one offset distribution per channel: spread within a channel is the small r_mu
    width = m.amax(dim=(0, 2)) - m.amin(dim=(0, 2))
    assert float(width.max()) <= 0.2 + 1e-6
    assert float(width.min()) > 0.19  # 2000 draws fill the interval
    s_unit = s.mean(dim=(0, 2))
    assert float(s_unit.min()) > 0.98 and float(s_unit.max()) < 1.27


def test_frozen_noise_reuses_one_draw_and_clears_on_exit():
    model = nn.Sequential(nn.Linear(4, 6), NoisyBatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(32, 4)
    with frozen_noise(model):
        a, b = model(x), model(x)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    c, d = model(x), model(x)
    assert not torch.allclose(c, d)
    assert not torch.allclose(a, c)


def test_frozen_noise_shape_mismatch_is_an_error():
    layer = ActivationNoise(3)
    with frozen_noise(layer):
        layer(torch.zeros(5, 3))
        with pytest.raises(ValueError, match="frozen noise was drawn for shape"):
            layer(torch.zeros(6, 3))


def test_noisy_bn_eval_equals_batchnorm_eval_and_running_stats_match():
    torch.manual_seed(0)
    bn, noisy = nn.BatchNorm1d(6), NoisyBatchNorm1d(6)
    with torch.no_grad():
        for layer in (bn, noisy):
            layer.weight.copy_(torch.linspace(0.5, 2, 6))
            layer.bias.copy_(torch.linspace(-1, 1, 6))
    for _ in range(3):
        x = torch.randn(20, 6) * 3 + 1
        bn(x)
        noisy(x)
    torch.testing.assert_close(noisy.running_mean, bn.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(noisy.running_var, bn.running_var, rtol=0, atol=0)
    bn.eval(), noisy.eval()
    x = torch.randn(10, 6)
    torch.testing.assert_close(noisy(x), bn(x), rtol=0, atol=0)
    # in training the output is BN's output, perturbed
    bn.train(), noisy.train()
    z = torch.randn(20, 6)
    assert not torch.allclose(noisy(z), bn(z), atol=1e-2)


def test_noisy_bn_training_output_is_noise_applied_to_bn_output():
    bn = nn.BatchNorm1d(5)
    noisy = NoisyBatchNorm1d(5, generator=gen(7))
    x = torch.randn(12, 5)
    s, m = ActivationNoise(5, generator=gen(7)).sample(x)
    torch.testing.assert_close(noisy(x), s * bn(x) + m, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs, msg", [({"n_sigma": 0.5}, "n_sigma"), ({"r_mu": -1}, ">= 0"),
                                         ({"num_features": 0}, "positive integer")])
def test_noise_bad_arguments(kwargs, msg):
    args = {"num_features": 3, **kwargs}
    with pytest.raises(ValueError, match=msg):
        ActivationNoise(**args)


def test_noise_bad_input():
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        ActivationNoise(3)(torch.zeros(3))
    with pytest.raises(ValueError, match="3 channels"):
        ActivationNoise(3)(torch.zeros(4, 5))


# ------------------------------------------------------------------ LpNorm1d

def test_lp2_equals_batchnorm_on_a_zero_mean_batch():
    torch.manual_seed(0)
    x = torch.randn(64, 8, dtype=torch.float64) * torch.linspace(0.5, 3, 8, dtype=torch.float64)
    x = x - x.mean(0)  # batch mean removed: the l2 average is then the biased std
    layer = LpNorm1d(8, p=2, eps=1e-12).double()
    ref = F.batch_norm(x, None, None, training=True, eps=1e-24)
    torch.testing.assert_close(layer(x), ref, rtol=1e-9, atol=1e-9)


def test_lp2_differs_from_batchnorm_when_the_mean_is_not_zero():
    x = torch.randn(64, 4, dtype=torch.float64) + 2.0
    layer = LpNorm1d(4, p=2, eps=1e-12).double()
    ref = F.batch_norm(x, None, None, training=True, eps=1e-24)
    # the divisor is the uncentered l2 average, larger than the std: outputs shrink
    assert float(layer(x).detach().std()) < 0.6 * float(ref.std())


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_lp_forward_matches_numpy(p):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5)) * 2 + 0.5
    w, b = rng.normal(size=5), rng.normal(size=5)
    layer = LpNorm1d(5, p=p, eps=1e-5).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    out = layer(torch.from_numpy(x)).detach().numpy()
    d = np.abs(x).max(0) if math.isinf(p) else (np.abs(x) ** p).mean(0) ** (1 / p)
    expected = w * (x - x.mean(0)) / (d + 1e-5) + b
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_lp_gradcheck(p):
    torch.manual_seed(0)
    layer = LpNorm1d(3, p=p).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_lp_3d_input_and_eval_uses_running_stats():
    torch.manual_seed(0)
    layer = LpNorm1d(3, p=1, momentum=0.5)
    x = torch.randn(10, 3, 7) + 1
    layer(x)
    mu = x.mean(dim=(0, 2))
    d = x.abs().mean(dim=(0, 2))
    torch.testing.assert_close(layer.running_mean, 0.5 * mu)
    torch.testing.assert_close(layer.running_norm, 0.5 + 0.5 * d)
    layer.eval()
    z = torch.randn(2, 3, 7)
    expected = (z - layer.running_mean.view(1, 3, 1)) / (layer.running_norm.view(1, 3, 1) + layer.eps)
    torch.testing.assert_close(layer(z), expected)


@pytest.mark.parametrize("kwargs, msg", [({"p": 0.5}, "p must be >= 1"), ({"p": float("nan")}, "p must be"),
                                         ({"eps": 0.0}, "eps must be positive"),
                                         ({"momentum": 2.0}, "momentum")])
def test_lp_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        LpNorm1d(3, **kwargs)


def test_lp_batch_of_one_in_training_is_an_error():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        LpNorm1d(3)(torch.zeros(1, 3))
