"""bncourse.mlp_lecture: the lecture's recipe in both orders (slides and code) and its split. The full recipe (10
epochs over 60 000 images, three networks) takes about 90 s per seed on one thread, so its check runs only with
BNCOURSE_SLOW=1; the fast tests check the models, the split, the measuring functions and the seed offset on a
small slice."""
import os

import numpy as np
import pytest
import torch

from bncourse import claims
from bncourse.data import load_images
from bncourse.mlp_lecture import (LECTURE_RECIPE, ORDERS, batch_vs_running_accuracy, generalization_gap,
                                  lecture_data, lecture_model, lecture_run)
from bncourse.seeding import SEED_OFFSET_ENV
from bncourse.training import evaluate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    try:
        return load_images("fashion-mnist", verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")


def _kinds(block):
    return [type(m).__name__ for m in block.children()]


def test_lecture_model_orders():
    plain, slides, code = lecture_model(None), lecture_model("bn", "slides"), lecture_model("bn", "code")
    assert [m.out_features for m in plain.modules() if isinstance(m, torch.nn.Linear)] == [32, 32, 10]
    assert _kinds(plain.hidden1) == ["Linear", "ReLU"] and plain.hidden1.linear.bias is not None
    # the slides: BN between the Linear (no bias: BN's beta replaces it) and the ReLU
    assert _kinds(slides.hidden1) == _kinds(slides.hidden2) == ["Linear", "BatchNorm1d", "ReLU"]
    assert slides.hidden1.linear.bias is None
    # the lecture's code: Linear (with bias) -> ReLU -> BatchNorm1d
    assert _kinds(code.hidden1) == _kinds(code.hidden2) == ["Linear", "ReLU", "BatchNorm1d"]
    assert code.hidden1.linear.bias is not None
    assert set(ORDERS) == {"slides", "code"}
    with pytest.raises(ValueError, match="order must be one of"):
        lecture_model("bn", "after")


def test_lecture_split(data):
    split = lecture_data("fashion-mnist")
    assert split.x_train.shape == (60000, 784) and split.y_train.shape == (60000,)
    assert split.x_val is split.x_test and split.x_val.shape == (10000, 784)
    assert split.y_val is split.y_test
    with pytest.raises(ValueError, match="lecture's split"):
        lecture_data("digits")


def test_lecture_run_records_every_epoch(data):
    run = lecture_run(data, 0, epochs=2, n_train=640)
    assert set(run.models) == {"no BN", "BN (slides)", "BN (code)"}
    for label, model in run.models.items():
        epochs = run.histories[label].epochs
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert {"train_loss", "train_acc", "train_loss_eval", "train_acc_eval", "val_loss", "val_acc"} <= set(epochs[-1])
        assert not model.training
        # the evaluation-mode training metrics are those of the final model over the whole training slice
        loss, acc = evaluate(model, data.x_train[:640], data.y_train[:640])
        assert epochs[-1]["train_loss_eval"] == pytest.approx(loss, rel=1e-6)
        assert epochs[-1]["train_acc_eval"] == acc
    h = run.histories["BN (code)"]
    assert generalization_gap(h) == pytest.approx(run.final("BN (code)", "val_loss")
                                                  - run.final("BN (code)", "train_loss_eval"))
    assert generalization_gap(h, eval_mode=False) == pytest.approx(run.final("BN (code)", "val_loss")
                                                                   - run.final("BN (code)", "train_loss"))
    assert h.config["batch_size"] == LECTURE_RECIPE["batch_size"] == 32
    assert set(lecture_run(data, 0, epochs=1, n_train=64, orders=("code",)).models) == {"no BN", "BN (code)"}
    with pytest.raises(ValueError, match="order must be one of"):
        lecture_run(data, 0, epochs=1, n_train=64, orders=("before",))


def test_batch_vs_running_accuracy_leaves_model_untouched(data):
    run = lecture_run(data, 1, epochs=1, n_train=3200, orders=("slides",))
    model = run.models["BN (slides)"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc_batch, acc_running = batch_vs_running_accuracy(model, data.x_val[:1000], data.y_val[:1000])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and 0.5 < acc_batch < 1 and 0.5 < acc_running < 1
    with pytest.raises(ValueError, match="batch_size"):
        batch_vs_running_accuracy(model, data.x_val[:10], data.y_val[:10], batch_size=1)


def test_seed_offset_shifts_the_lecture(monkeypatch, data):
    # seed s under BNCOURSE_SEED_OFFSET=k draws exactly what seed s + k draws without it
    def run(seed):
        r = lecture_run(data, seed, epochs=1, n_train=256, orders=("code",))
        accs = batch_vs_running_accuracy(r.models["BN (code)"], data.x_val[:256], data.y_val[:256], seed=seed)
        return r.histories["BN (code)"].epochs[-1]["train_loss"], r.final("no BN", "val_loss"), accs

    monkeypatch.setenv(SEED_OFFSET_ENV, "7")
    shifted = run(2)
    monkeypatch.delenv(SEED_OFFSET_ENV)
    assert run(9) == shifted
    assert run(2) != shifted


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BNCOURSE_SLOW") != "1", reason="full lecture recipe: set BNCOURSE_SLOW=1")
def test_full_recipe_five_seeds(monkeypatch):
    # The full recipe on the lecture's split of Fashion-MNIST, seeds 0-4, both orders: BN ends with a lower mean
    # validation loss than the plain network (one-sided 95 % t-interval of the paired difference above 0).
    monkeypatch.setenv(claims.STRICT_ENV, "1")
    split = lecture_data("fashion-mnist")
    runs = [lecture_run(split, seed) for seed in range(5)]
    for order in ORDERS:
        claims.greater(f"full-recipe-{order}", f"BN ({order}) ends with a lower validation loss",
                       [r.final("no BN", "val_loss") for r in runs],
                       [r.final(f"BN ({order})", "val_loss") for r in runs], by=0.0, show=False)
