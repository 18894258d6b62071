"""bncourse.landscape.gradient_ratio_vs_depth / growth_per_layer: BN's gradient explosion at initialization
(Yang et al., 2019) against a He-initialized plain ReLU network, the baseline whose gradients stay put."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bncourse.landscape import YANG_RELU_GROWTH, gradient_norms_at_init, gradient_ratio_vs_depth, growth_per_layer

torch.set_num_threads(1)
DEPTHS = [4, 8, 16]


@pytest.fixture(scope="module")
def batch(digits):
    return torch.from_numpy(digits.x_train[:64]), torch.from_numpy(digits.y_train[:64])


def test_yang_constant():
    assert YANG_RELU_GROWTH == pytest.approx(math.sqrt(math.pi / (math.pi - 1)), rel=1e-15)
    assert YANG_RELU_GROWTH == pytest.approx(1.2112, abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_bn_explodes_geometrically_and_plain_he_does_not(batch, seed):
    x, y = batch
    bn = gradient_ratio_vs_depth(DEPTHS, x, y, width=64, seed=seed, norm="bn")
    plain = gradient_ratio_vs_depth(DEPTHS, x, y, width=64, seed=seed)
    # 5 seeds: BN grows by 1.21-1.23 per layer (Yang et al.: 1.211), the plain net by 0.97-1.03
    assert 1.12 < growth_per_layer(DEPTHS, bn) < 1.32, bn
    assert 0.9 < growth_per_layer(DEPTHS, plain) < 1.1, plain
    assert np.all(np.diff(bn) > 0), bn                 # deeper is always worse with BN
    assert bn[-1] > 8 and plain[-1] < 3, (bn, plain)   # 5 seeds at depth 16: 16-25 against 0.8-1.6


def test_ratio_is_the_first_over_last_hidden_gradient(batch):
    x, y = batch
    norms = gradient_norms_at_init([64, 32, 32, 32, 10], x, y, seed=3, norm="bn")
    got = gradient_ratio_vs_depth([3], x, y, width=32, seed=3, norm="bn")
    assert got.shape == (1,)
    assert got[0] == pytest.approx(norms[0] / norms[-1], rel=1e-12)


def test_growth_per_layer_recovers_a_geometric_rate():
    d = np.array([2, 5, 9, 20])
    assert growth_per_layer(d, 3.0 * 1.3 ** d) == pytest.approx(1.3, rel=1e-12)
    assert growth_per_layer(d, np.ones(4)) == pytest.approx(1.0, abs=1e-12)


def test_bad_input(batch):
    x, y = batch
    with pytest.raises(ValueError, match="depths must list"):
        gradient_ratio_vs_depth([1, 4], x, y)
    with pytest.raises(ValueError, match=r"need x of shape \(B, D\)"):
        gradient_ratio_vs_depth([4], x[:10], y)
    with pytest.raises(ValueError, match="n >= 2 distinct depths"):
        growth_per_layer([4], [2.0])
    with pytest.raises(ValueError, match="positive"):
        growth_per_layer([4, 8], [2.0, 0.0])
