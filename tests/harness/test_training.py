"""bncourse.training: evaluate, the seeded training loop and its parts (optimizer, batches, evaluation), divergence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.models import mlp
from bncourse.progress import ProgressBar, progress_wanted
from bncourse.training import (
    Evaluation,
    History,
    epoch_batches,
    evaluate,
    make_optimizer,
    set_seed,
    train,
)

torch.set_num_threads(1)


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
    assert progress_wanted(None) is False  # pytest is not a Jupyter kernel
    assert progress_wanted(True) is True and progress_wanted(False) is False
    monkeypatch.setattr("bncourse.progress.in_notebook", lambda: True)
    assert progress_wanted(None) is True
    monkeypatch.setenv("CI", "true")
    assert progress_wanted(None) is False
    monkeypatch.delenv("CI")
    monkeypatch.setenv("BNCOURSE_PROGRESS", "0")
    assert progress_wanted(None) is False


def test_progress_bar_counts_the_steps_and_can_be_off():
    bar = ProgressBar(True, total=3)
    for step in (1, 2, 3):
        bar.update(step, 0.5)
    assert bar.bar is not None and bar.bar.n == 3
    bar.close()
    off = ProgressBar(False, total=3)
    off.update(1, 0.5)
    off.close()
    assert off.bar is None


# ------------------------------------------------------------------------------------------ the parts


def test_make_optimizer_names_sgd_momentum_apart_from_bn_momentum():
    m = _model()
    opt = make_optimizer(m, "sgd", lr=0.2, sgd_momentum=0.9, weight_decay=1e-4)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["lr"] == 0.2 and opt.defaults["weight_decay"] == 1e-4
    assert m.hidden1.norm.momentum == 0.1  # BatchNorm's momentum is not the optimizer's
    assert isinstance(make_optimizer(m, "adam", lr=1e-3), torch.optim.Adam)
    given = torch.optim.SGD(m.parameters(), lr=1.0)
    assert make_optimizer(m, given) is given
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer(m, "rmsprop")
    with pytest.raises(TypeError):
        train(m, (torch.zeros(8, 64), torch.zeros(8, dtype=torch.long)), steps=1, momentum=0.9)


def test_train_with_sgd_momentum_matches_a_hand_written_loop(digits):
    m = _model(norm=None, activation="relu", init="he")
    ref = copy.deepcopy(m)
    h = train(m, digits, steps=7, batch_size=25, lr=0.05, sgd_momentum=0.9, seed=4)
    assert h.config["sgd_momentum"] == 0.9
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
    gen = torch.Generator().manual_seed(4)
    torch.randperm(len(x), generator=gen)  # train draws its fixed evaluation subset first
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for idx in next(epoch_batches(len(x), 25, 7, gen)):
        loss = nn.functional.cross_entropy(ref(x[idx]), y[idx])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert h.train_loss == losses
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), ref.parameters()))


def test_epoch_batches_are_permutations_without_the_incomplete_batch():
    gen = torch.Generator().manual_seed(0)
    epochs = list(epoch_batches(10, 3, 7, gen))
    assert [len(e) for e in epochs] == [3, 3, 1]  # 3 full batches per epoch, 7 in all
    for e in epochs[:2]:
        seen = torch.cat(e)
        assert all(len(b) == 3 for b in e) and len(set(seen.tolist())) == 9  # distinct samples
    assert list(epoch_batches(10, 3, 0, gen)) == []
    with pytest.raises(ValueError, match="batch_size=11"):
        next(epoch_batches(10, 11, 1, gen))


def test_evaluation_records_metrics_and_runs_hooks_in_eval_mode(digits):
    m = _model()
    m.train()
    seen = []
    x, y = torch.from_numpy(digits.x_val[:50]), torch.from_numpy(digits.y_val[:50])
    ev = Evaluation(m, nn.functional.cross_entropy, x, y, hooks=[lambda model, step, xh: seen.append(
        (step, model.training, torch.is_grad_enabled(), len(xh)))])
    record = ev(5)
    assert set(record) == {"step", "train_loss", "train_acc"} and record["step"] == 5
    assert (record["train_loss"], record["train_acc"]) == evaluate(m, x, y)
    assert seen == [(5, False, False, 50)] and m.training  # hooks saw eval mode; the mode is back
    assert ev.split_metrics() == {}


def test_step_callbacks_may_be_a_list(digits):
    calls = []
    m = _model()
    train(m, digits, steps=4, batch_size=20, step_callback=[lambda mo, s, xb, yb: calls.append(("a", s)),
                                                            lambda mo, s, xb, yb: calls.append(("b", len(xb)))])
    assert calls == [("a", 1), ("b", 20), ("a", 2), ("b", 20), ("a", 3), ("b", 20), ("a", 4), ("b", 20)]


def test_history_is_a_plain_dataclass():
    h = History()
    assert h.steps == [] and not h.diverged
    with pytest.raises(KeyError, match="no evaluations"):
        h.metric("test_acc")
