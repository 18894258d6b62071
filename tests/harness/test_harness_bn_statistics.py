"""bncourse.bn_statistics: re-estimating BN running statistics (PreciseBN) and AdaBN under input shifts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.bn_statistics import adabn_evaluate, adabn_experiment, recompute_bn_statistics
from bncourse.data import load_images
from bncourse.models import mlp
from bncourse.shift import shift_images
from bncourse.training import set_seed

torch.set_num_threads(1)


def _bn_classes():
    classes = [nn.BatchNorm1d]
    try:
        from bncourse import torch as bt

        classes.append(bt.BatchNorm1d)
    except (ImportError, AttributeError):  # the course's BN is optional here
        pass
    return classes


@pytest.mark.parametrize("bn_class", _bn_classes())
def test_recompute_bn_statistics_single_batch_is_exact_mean_and_unbiased_var(bn_class):
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 2
    bn = bn_class(6).double()
    model = nn.Sequential(bn)
    model.eval()
    used = recompute_bn_statistics(model, x, batch_size=500)
    assert used == 1 and not model.training and bn.momentum == 0.1
    xn = x.numpy()
    np.testing.assert_allclose(bn.running_mean.numpy(), xn.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), xn.var(0, ddof=1), rtol=1e-12)


def test_recompute_bn_statistics_many_batches_is_algorithm_2():
    """E[x] = mean of batch means (= data mean), Var[x] = m/(m-1) * mean of biased batch variances."""
    g = torch.Generator().manual_seed(1)
    set_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 3), nn.BatchNorm1d(3)).double()
    x = torch.randn(410, 4, generator=g, dtype=torch.float64)
    params_before = [p.clone() for p in model.parameters()]
    # stale statistics from "training"
    model.train()
    for _ in range(3):
        model(x[:50] * 5)
    used = recompute_bn_statistics(model, x.numpy(), batch_size=100)
    assert used == 4  # the last 10 samples are dropped: equal-weight batches
    with torch.no_grad():
        h = model[0](x[:400]).numpy().reshape(4, 100, 3)
    bn = model[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), h.reshape(-1, 3).mean(0), rtol=1e-12, atol=1e-12)
    expected_var = (h.var(axis=1, ddof=0) * 100 / 99).mean(0)
    np.testing.assert_allclose(bn.running_var.numpy(), expected_var, rtol=1e-12)
    assert int(bn.num_batches_tracked) == 4
    assert all(torch.equal(a, b) for a, b in zip(params_before, model.parameters()))
    assert model[4].momentum == 0.1 and model.training


def test_recompute_bn_statistics_iterable_and_errors():
    bn = nn.BatchNorm1d(2)
    batches = [(torch.ones(3, 2) * k, None) for k in range(4)]
    assert recompute_bn_statistics(nn.Sequential(bn), batches, max_batches=2) == 2
    torch.testing.assert_close(bn.running_mean, torch.full((2,), 0.5))  # mean of the batch means 0 and 1
    with pytest.raises(ValueError, match="no BatchNorm"):
        recompute_bn_statistics(nn.Sequential(nn.Linear(2, 2)), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least batch_size"):
        recompute_bn_statistics(nn.Sequential(bn), torch.zeros(4, 2), batch_size=5)
    with pytest.raises(ValueError, match="no batches"):
        recompute_bn_statistics(nn.Sequential(bn), [])


def test_recompute_bn_statistics_restores_mixed_modes_and_momenta():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.3), nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.train()
    model[3].eval()  # a model with one BN layer frozen in eval mode
    recompute_bn_statistics(model, torch.randn(40, 3), batch_size=10, momentum=0.5)
    assert [m.training for m in model] == [True, True, True, False]
    assert model[1].momentum == 0.3 and model[3].momentum == 0.1


def test_adabn_undoes_an_affine_input_shift_exactly():
    """BN right after the first Linear absorbs x -> a x + b (a > 0) once its statistics are recomputed."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (1000, 20)).astype(np.float32)
    model = mlp([20, 16, 16, 3], norm="bn")
    src, tgt = copy.deepcopy(model), copy.deepcopy(model)
    x_shift = shift_images(x, contrast=0.5, brightness=0.3, clip=False)
    recompute_bn_statistics(src, x, batch_size=100)
    recompute_bn_statistics(tgt, x_shift, batch_size=100)
    src.eval(), tgt.eval(), model.eval()
    with torch.no_grad():
        out_src = src(torch.from_numpy(x))
        out_tgt = tgt(torch.from_numpy(x_shift))
        stale = src(torch.from_numpy(x_shift))
    np.testing.assert_allclose(out_tgt.numpy(), out_src.numpy(), rtol=1e-3, atol=1e-3)
    assert (stale - out_src).abs().max() > 0.1  # the stale statistics do not


@pytest.mark.parametrize("seed", range(2))
def test_adabn_experiment_on_digits(seed):
    data = load_images("digits", verbose=False)
    r = adabn_experiment(data, seed=seed, steps=300, hidden=(64,), batch_size=32, n_adapt=200, n_eval=360)
    affine, inverted = r["contrast 0.5, brightness +0.3"], r["inverted"]
    assert affine.source > 0.9
    assert affine.adabn > affine.stale + 0.05  # observed >= 0.08 (5 seeds)
    assert affine.adabn > affine.source - 0.02
    assert inverted.adabn < 0.3 and inverted.stale < 0.3  # statistics cannot undo a sign flip


def test_adabn_evaluate_does_not_change_the_model():
    data = load_images("digits", verbose=False)
    set_seed(0)
    model = mlp([64, 16, 10], norm="bn")
    before = copy.deepcopy(model.state_dict())
    r = adabn_evaluate(model, data, n_adapt=100, n_eval=50, contrast=0.5)
    assert all(0.0 <= v <= 1.0 for v in (r.source, r.stale, r.adabn))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="n_adapt"):
        adabn_evaluate(model, data, n_adapt=1)
