"""bncourse.mlp_lecture: the lecture recipe's claims. The full recipe (10 epochs over 55 000 images, both networks)
takes about 30 s per seed on one thread, so its five-seed check runs only with BNCOURSE_SLOW=1; the fast tests
check the measuring functions and the recipe's plumbing on a small slice."""
import os

import numpy as np
import pytest
import torch

from bncourse.data import load_images
from bncourse.mlp_lecture import (LECTURE_RECIPE, batch_vs_running_accuracy, generalization_gap, lecture_model,
                                  lecture_run)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    try:
        return load_images("fashion-mnist", verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")


def test_lecture_model_layout():
    plain, bn = lecture_model(None), lecture_model("bn")
    assert [m.out_features for m in plain.modules() if isinstance(m, torch.nn.Linear)] == [32, 32, 10]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in bn.modules()) == 2
    assert bn.hidden1.linear.bias is None and plain.hidden1.linear.bias is not None


def test_lecture_run_records_every_epoch(data):
    run = lecture_run(data, 0, epochs=2, n_train=640)
    for label in ("no BN", "BN"):
        epochs = run.histories[label].epochs
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(epochs[-1])
        assert not run.models[label].training
    assert generalization_gap(run.histories["BN"]) == pytest.approx(
        run.final("BN", "val_loss") - run.final("BN", "train_loss"))
    assert run.histories["BN"].config["batch_size"] == LECTURE_RECIPE["batch_size"] == 32


def test_batch_vs_running_accuracy_leaves_model_untouched(data):
    run = lecture_run(data, 1, epochs=1, n_train=3200)
    model = run.models["BN"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc_batch, acc_running = batch_vs_running_accuracy(model, data.x_val[:1000], data.y_val[:1000])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and 0.5 < acc_batch < 1 and 0.5 < acc_running < 1
    with pytest.raises(ValueError, match="batch_size"):
        batch_vs_running_accuracy(model, data.x_val[:10], data.y_val[:10], batch_size=1)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BNCOURSE_SLOW") != "1", reason="full lecture recipe: set BNCOURSE_SLOW=1")
def test_full_recipe_five_seeds(data):
    # The chapter's claims for the exact recipe, seeds 0-4 (measured: BN validation loss 0.313-0.371 vs
    # 0.398-0.443 without, smallest per-seed gap 0.058; accuracy 0.859-0.883 vs 0.849-0.861): BN ends with a
    # lower validation loss on every seed and a higher mean validation accuracy; predicting with the statistics
    # of random batches of 32 and with the running statistics agree within 0.02 (measured within 0.01).
    runs = [lecture_run(data, seed) for seed in range(5)]
    loss = np.array([[r.final(k, "val_loss") for r in runs] for k in ("no BN", "BN")])
    acc = np.array([[r.final(k, "val_acc") for r in runs] for k in ("no BN", "BN")])
    assert np.all(loss[1] < loss[0] - 0.03), loss
    assert acc[1].mean() > acc[0].mean() + 0.01, acc
    for r in runs:
        acc_batch, acc_running = batch_vs_running_accuracy(r.models["BN"], data.x_val, data.y_val)
        assert abs(acc_batch - acc_running) < 0.02
