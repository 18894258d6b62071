"""bncourse.training: evaluate, the seeded training loop, divergence, hooks, BN statistics re-estimation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.data import load_images
from bncourse.models import hidden_preactivations, mlp
from bncourse.training import (
    ActivationRecorder,
    History,
    PercentileRecorder,
    _progress_wanted,
    evaluate,
    recompute_bn_statistics,
    set_seed,
    train,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", verbose=False)


def _model(seed=0, norm="bn", activation="sigmoid", init=0.1):
    set_seed(seed)
    return mlp([64, 32, 32, 10], activation=activation, norm=norm, init=init)


# ----------------------------------------------------------------------------------------------- evaluate


def test_evaluate_matches_manual_and_restores_mode(digits):
    m = _model()
    m.train()
    loss, acc = evaluate(m, digits.x_test, digits.y_test, batch_size=7)
    assert m.training  # mode restored
    m.eval()
    with torch.no_grad():
        logits = m(torch.from_numpy(digits.x_test))
    y = torch.from_numpy(digits.y_test)
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert evaluate(m, digits.x_test, digits.y_test, batch_size=1000) == pytest.approx((loss, acc), rel=1e-5)
    assert not m.training  # eval stays eval


def test_evaluate_does_not_touch_bn_buffers(digits):
    m = _model()
    before = copy.deepcopy(m.state_dict())
    evaluate(m, digits.x_val, digits.y_val)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_evaluate_input_errors():
    m = _model()
    with pytest.raises(ValueError, match="need y of shape"):
        evaluate(m, np.zeros((4, 64), np.float32), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="labels must be integers"):
        evaluate(m, np.zeros((4, 64), np.float32), np.zeros(4, np.float32))


# -------------------------------------------------------------------------------------------------- train


def test_train_is_deterministic_under_a_seed(digits):
    runs = []
    for _ in range(2):
        m = _model(seed=3)
        h = train(m, digits, steps=60, batch_size=16, lr=0.5, seed=7, eval_every=20, eval_subset=100)
        runs.append((h, [p.detach().clone() for p in m.parameters()]))
    (h1, p1), (h2, p2) = runs
    assert h1.train_loss == h2.train_loss and h1.evals == h2.evals
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    m = _model(seed=3)
    h3 = train(m, digits, steps=60, batch_size=16, lr=0.5, seed=8, eval_every=20, eval_subset=100)
    assert h3.train_loss != h1.train_loss  # another seed, another batch order


def test_train_dropout_is_seeded_and_global_rng_is_left_alone(digits):
    def run():
        set_seed(0)
        m = mlp([64, 32, 10], dropout=0.5)
        return train(m, digits, steps=20, batch_size=16, seed=1).train_loss

    a = run()
    b = run()
    assert a == b
    torch.manual_seed(123)
    m = mlp([64, 8, 10], dropout=0.5)
    state = torch.get_rng_state()
    train(m, digits, steps=5, batch_size=16)
    # train() restores the global generator: the caller's random stream is not shifted by training
    assert torch.equal(torch.get_rng_state(), state)


def test_history_contents_and_helpers(digits):
    m = _model()
    h = train(m, digits, steps=50, batch_size=20, lr=0.5, eval_every=20, eval_on="val", eval_subset=None)
    assert h.steps == list(range(1, 51)) and len(h.train_loss) == 50
    assert [e["step"] for e in h.evals] == [0, 20, 40, 50]
    assert set(h.evals[0]) == {"step", "train_loss", "train_acc", "val_loss", "val_acc"}
    steps, acc = h.metric("val_acc")
    assert steps.tolist() == [0, 20, 40, 50] and acc.shape == (4,)
    # the recorded eval numbers are evaluate() on the full validation set of the final model
    assert acc[-1] == pytest.approx(evaluate(m, digits.x_val, digits.y_val)[1])
    first = h.steps_to("val_acc", acc.max())
    assert first == int(steps[np.argmax(acc >= acc.max())])
    assert h.steps_to("val_acc", 1.01) is None
    assert h.steps_to("val_loss", h.best("val_loss", mode="min"), mode="min") is not None
    assert h.final("val_acc") == acc[-1]
    with pytest.raises(KeyError, match="unknown metric"):
        h.metric("test_acc")
    assert not h.diverged and h.config["lr"] == 0.5
    # learning happened on this easy problem
    assert h.final("val_acc") > h.evals[0]["val_acc"] + 0.3


def test_epochs_give_per_epoch_summaries(digits):
    m = _model(norm=None, activation="relu", init="he")
    h = train(m, digits, epochs=2, batch_size=100, lr=0.1, eval_on="val")
    per_epoch = len(digits.x_train) // 100
    assert len(h.steps) == 2 * per_epoch and h.evals == []
    assert [e["epoch"] for e in h.epochs] == [1, 2] and [e["step"] for e in h.epochs] == [per_epoch, 2 * per_epoch]
    e1 = h.epochs[0]
    assert set(e1) == {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert e1["train_loss"] == pytest.approx(np.mean(h.train_loss[:per_epoch]))  # equal-size batches
    assert "epoch" in h.epoch_table() and len(h.epoch_table().splitlines()) == 3


def test_raw_tensor_data_and_eval_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).long()
    set_seed(0)
    m = mlp([5, 16, 2])
    h = train(m, (x, y), steps=100, batch_size=20, lr=0.3, eval_every=50, eval_data=(x[:50], y[:50]))
    assert h.final("test_acc") > 0.9
    h2 = train(m, (x.numpy(), y.numpy()), steps=10, batch_size=20, eval_every=5)
    assert set(h2.evals[0]) == {"step", "train_loss", "train_acc"}


def test_divergence_is_detected_not_raised(digits):
    m = _model(norm=None, activation="relu", init="he")
    h = train(m, digits, steps=200, batch_size=32, lr=1e4, eval_every=50)
    assert h.diverged and h.diverged_at is not None and h.diverged_at < 200
    assert len(h.train_loss) == h.diverged_at and not np.isfinite(h.train_loss[-1])
    assert np.all(np.isfinite(h.train_loss[:-1]))
    m = _model(norm=None, activation="relu", init="he")
    h2 = train(m, digits, steps=40, batch_size=32, lr=1e4, stop_on_nonfinite=False)
    assert h2.diverged and len(h2.train_loss) == 40


def test_train_argument_errors(digits):
    m = _model()
    with pytest.raises(ValueError, match="exactly one"):
        train(m, digits)
    with pytest.raises(ValueError, match="exactly one"):
        train(m, digits, steps=1, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        train(m, digits, steps=1, batch_size=10**6)
    with pytest.raises(ValueError, match="optimizer"):
        train(m, digits, steps=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="eval_on"):
        train(m, digits, steps=1, eval_on="dev")


def test_progress_auto_is_off_outside_notebooks_and_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BNCOURSE_PROGRESS", raising=False)
    assert _progress_wanted(None) is False  # pytest is not a Jupyter kernel
    assert _progress_wanted(True) is True and _progress_wanted(False) is False
    monkeypatch.setattr("bncourse.training._in_notebook", lambda: True)
    assert _progress_wanted(None) is True
    monkeypatch.setenv("CI", "true")
    assert _progress_wanted(None) is False
    monkeypatch.delenv("CI")
    monkeypatch.setenv("BNCOURSE_PROGRESS", "0")
    assert _progress_wanted(None) is False


# -------------------------------------------------------------------------------------------------- hooks


def test_percentile_recorder_matches_numpy(digits):
    m = _model()
    module = hidden_preactivations(m)[-1]
    rec = PercentileRecorder(module, unit=3, q=(15, 50, 85))
    x = torch.from_numpy(digits.x_test)
    rec.record(m, x, step=0)
    m.eval()
    with torch.no_grad():
        h = m.hidden1(x)
        pre = m.hidden2.norm(m.hidden2.linear(h))[:, 3].double().numpy()
    np.testing.assert_allclose(rec.percentiles[0], np.percentile(pre, [15, 50, 85]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rec.spread(), [np.percentile(pre, 85) - np.percentile(pre, 15)], rtol=1e-5)
    assert m.training is False  # mode restored (was eval)


def test_percentile_recorder_as_train_hook(digits):
    m = _model()
    rec = PercentileRecorder(hidden_preactivations(m)[-1], unit=0)
    act = ActivationRecorder(m.hidden1.act, reduce=lambda out: float(out.mean()))
    h = train(m, digits, steps=30, batch_size=20, eval_every=10, eval_subset=150, hooks=[rec, act])
    assert rec.steps == [0, 10, 20, 30] == act.steps
    assert rec.percentiles.shape == (4, 3)
    assert np.all(np.diff(rec.percentiles, axis=1) >= 0)  # 15th <= 50th <= 85th
    assert all(0 < v < 1 for v in act.values)  # sigmoid outputs
    # the last record is the final model's percentiles on the first 150 test images
    again = PercentileRecorder(hidden_preactivations(m)[-1], unit=0)
    again.record(m, digits.x_test[:150], step=30)
    np.testing.assert_allclose(again.percentiles[0], rec.percentiles[-1], rtol=1e-6)
    assert h.evals[-1]["step"] == 30


def test_recorder_errors():
    m = _model()
    with pytest.raises(ValueError, match="percentiles"):
        PercentileRecorder(m.hidden1.norm, q=(50, 101))
    rec = PercentileRecorder(m.hidden1.norm, unit=99)
    with pytest.raises(IndexError, match="unit 99"):
        rec.record(m, torch.zeros(4, 64), step=0)
    stranger = ActivationRecorder(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="ran 0 times"):
        stranger.record(m, torch.zeros(4, 64), step=0)


# ---------------------------------------------------------------------------------- BN statistics


def _bn_classes():
    classes = [nn.BatchNorm1d]
    try:
        from bncourse import torch as bt

        classes.append(bt.BatchNorm1d)
    except (ImportError, AttributeError):  # the course's BN is another engineer's module
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


def test_history_is_a_plain_dataclass():
    h = History()
    assert h.steps == [] and not h.diverged
    with pytest.raises(KeyError, match="no evaluations"):
        h.metric("test_acc")
