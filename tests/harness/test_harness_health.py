"""Tests of bncourse.health: the hooks-based health monitor, and of bncourse.ics: chapter 3's claims at
digits scale (the chapter makes them on Fashion-MNIST)."""
import numpy as np
import pytest
import torch
from torch import nn

from bncourse.health import HealthMonitor, activation_modules, saturated_fraction
from bncourse.ics import batch_feature_shift, class_batches, health_run
from bncourse.models import hidden_preactivations, mlp
from bncourse.training import set_seed, train


def test_saturated_fraction_known_values():
    t = torch.tensor([-0.99, -0.5, 0.0, 0.98, 0.96])
    assert saturated_fraction(nn.Tanh(), t) == pytest.approx(2 / 5)
    s = torch.tensor([0.01, 0.5, 0.99, 0.984, 0.016])
    assert saturated_fraction(nn.Sigmoid(), s) == pytest.approx(2 / 5)
    r = torch.tensor([0.0, 0.0, 1.0, 2.0])
    assert saturated_fraction(nn.ReLU(), r) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="GELU"):
        saturated_fraction(nn.GELU(), r)


def test_monitor_records_exact_gradients_and_leaves_the_model_alone(digits, sigmoid_bn_mlp):
    model = sigmoid_bn_mlp
    x, y = torch.from_numpy(digits.x_train[:40]), torch.from_numpy(digits.y_train[:40])
    mon = HealthMonitor(model, x, y)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    mon.record(model, step=0)
    assert not model.training  # mode restored
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # parameters and BN buffers untouched
    assert all(bool((p.grad == 7.0).all()) for p in model.parameters())  # .grad untouched
    # the recorded gradients are dL/d(activation output), computed independently here
    acts = activation_modules(model)
    outs = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o)) for n, m in acts.items()]
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    grads = torch.autograd.grad(loss, [outs[n] for n in acts])
    for n, g in zip(acts, grads):
        np.testing.assert_allclose(mon.gradients[n][0], g.double().reshape(-1).numpy(), rtol=0, atol=0)
        np.testing.assert_array_equal(mon.activations[n][0], outs[n].detach().double().reshape(-1).numpy())
        assert mon.saturation[n][0] == saturated_fraction(acts[n], outs[n])


def test_update_ratio_is_the_relative_weight_change_of_every_step(digits):
    set_seed(0)
    model = mlp([64, 16, 16, 10], activation="tanh", init="glorot")
    x, y = torch.from_numpy(digits.x_train[:32]), torch.from_numpy(digits.y_train[:32])
    mon = HealthMonitor(model, x, y, at=[3])
    snapshots = [[b.linear.weight.detach().clone() for b in (model.hidden1, model.hidden2)]]
    take = lambda m, step, xb, yb: snapshots.append([b.linear.weight.detach().clone() for b in (m.hidden1, m.hidden2)])
    train(model, digits, steps=5, lr=0.1, seed=0, eval_every=None, step_callback=[mon, take])
    assert mon.update_steps == [1, 2, 3, 4, 5] and mon.steps == [3]
    r = mon.ratios()
    assert r.shape == (2, 5)
    for t in range(5):
        for i in range(2):
            w0, w1 = snapshots[t][i], snapshots[t + 1][i]
            # float32 norms of (64 x 16) tensors: relative rounding ~1e-6
            assert r[i, t] == pytest.approx(float((w1 - w0).norm() / w0.norm()), rel=1e-5)
    # SGD: ||dW|| = lr * ||grad||, so the ratio is positive at every step
    assert np.all(r > 0)


def test_monitor_rejects_mismatched_probe(digits, sigmoid_bn_mlp):
    with pytest.raises(ValueError, match="examples"):
        HealthMonitor(sigmoid_bn_mlp, torch.zeros(4, 64), torch.zeros(3, dtype=torch.long))


SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_bn_prevents_saturation(digits, seed):
    # weights N(0, 1): the sigmoids saturate without BN (digits, 3 seeds: 18-34 % per layer), never with it
    plain = health_run(digits, norm=None, init=1.0, seed=seed, steps=300, at=(300,), probe=128, width=32).monitor
    bn = health_run(digits, norm="bn", init=1.0, seed=seed, steps=300, at=(300,), probe=128, width=32).monitor
    assert min(plain.saturation[n][-1] for n in plain.acts) > 0.1
    assert max(bn.saturation[n][-1] for n in bn.acts) < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_bn_keeps_first_layer_learning(digits, seed):
    # weights N(0, 0.1^2): without BN the first layer's gradients vanish (1/50 of the last layer's) and its
    # update-to-data ratio is ~200x smaller than with BN (digits, 3 seeds)
    runs = {norm: health_run(digits, norm=norm, init=0.1, seed=seed, steps=300, at=(300,), probe=128, width=32)
            for norm in (None, "bn")}
    grad_std = {k: [r.monitor.gradients[n][-1].std() for n in r.monitor.acts] for k, r in runs.items()}
    assert grad_std[None][0] < 0.1 * grad_std[None][-1]
    assert grad_std["bn"][0] > grad_std["bn"][-1]
    first = {k: np.median(r.monitor.ratios()[0]) for k, r in runs.items()}
    assert first["bn"] > 10 * first[None]


@pytest.mark.parametrize("seed", SEEDS)
def test_different_batches_give_different_features_unless_bn_normalizes_them(digits, seed):
    xa, xb, r1, r2 = class_batches(digits, 0, 1, size=25, seed=seed)
    for norm in (None, "bn"):
        run = health_run(digits, norm=norm, init=0.1, seed=seed, steps=300, at=(), probe=128, width=32)
        layer = hidden_preactivations(run.model)[-1]
        distinct = batch_feature_shift(run.model, layer, xa, xb)
        if norm is None:
            # two classes' features are far apart, two random batches' close (digits: 4.7x - 10x)
            assert distinct.mean_distance > 3 * batch_feature_shift(run.model, layer, r1, r2).mean_distance
        else:
            # training-mode BN gives every batch the per-unit mean beta: only float32 rounding is left
            # (each normalized value carries ~1e-7 relative error), observed <= 3e-7
            assert distinct.mean_distance < 1e-5
            # with the running statistics (eval mode) the difference is back
            assert batch_feature_shift(run.model, layer, xa, xb, mode="eval").mean_distance > 0.5


def test_class_batches_shapes_and_errors(digits):
    xa, xb, r1, r2 = class_batches(digits, 2, 3, size=20)
    assert all(t.shape == (20, 64) for t in (xa, xb, r1, r2))
    with pytest.raises(ValueError, match="fewer than the batch size"):
        class_batches(digits, 0, 1, size=100)


def test_plot_health_draws_one_row_per_monitor(digits, sigmoid_bn_mlp):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bncourse.plotting import plot_health

    x, y = torch.from_numpy(digits.x_train[:32]), torch.from_numpy(digits.y_train[:32])
    mon = HealthMonitor(sigmoid_bn_mlp, x, y, at=[2])
    train(sigmoid_bn_mlp, digits, steps=2, lr=0.1, seed=0, eval_every=None, step_callback=mon)
    axes = plot_health({"a": mon, "b": mon}, step=2)
    assert axes.shape == (2, 4) and all(ax.get_title() for ax in axes.ravel())
    with pytest.raises(ValueError, match="not recorded"):
        plot_health({"a": mon}, step=1)
    plt.close("all")
