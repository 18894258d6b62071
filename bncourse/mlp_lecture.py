"""The well-known "MLP with and without BatchNorm" lecture recipe, and what it shows about BN.

The recipe: a 784-32-32-10 MLP, each hidden layer ``Linear -> BatchNorm1d -> ReLU`` (the plain network
drops the BN layers and keeps the biases), Adam with learning rate 0.01, batch size 32, 10 epochs over the
whole training set, losses and accuracies recorded per epoch. The lecture used MNIST; offline the course
uses Fashion-MNIST, a harder data set, so the numbers are not comparable with the lecture's.

Besides the runs themselves the module measures two things the chapter claims:

* :func:`generalization_gap`: validation loss minus training loss at the end of a run (BN's batch noise
  acts as a regularizer, so the gap is expected to be smaller with BN);
* :func:`batch_vs_running_accuracy`: the accuracy of a trained BN network when it normalizes with the
  statistics of random mini-batches (training mode) versus its running statistics (evaluation mode).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData
from bncourse.history import History
from bncourse.models import mlp
from bncourse.state import preserved
from bncourse.training import evaluate, set_seed, train

__all__ = ["LECTURE_RECIPE", "LectureRun", "lecture_model", "lecture_run", "generalization_gap",
           "batch_vs_running_accuracy", "LECTURE_MNIST_FIGURES"]

#: The recipe's hyperparameters.
LECTURE_RECIPE = dict(sizes=(784, 32, 32, 10), optimizer="adam", lr=0.01, batch_size=32, epochs=10)

#: The lecture's MNIST figures after 10 epochs, as quoted in the course (approximate, read off the lecture).
LECTURE_MNIST_FIGURES = {"BN": {"val_acc": 0.97, "val_loss": 0.09},
                         "no BN": {"val_acc": "0.95-0.96", "val_loss": 0.21}}


@dataclass
class LectureRun:
    """Both networks of one seed: ``models[label]`` and ``histories[label]`` for ``label`` in
    ``("no BN", "BN")``."""

    seed: int
    models: dict[str, nn.Module]
    histories: dict[str, History]

    def final(self, label: str, metric: str) -> float:
        """``metric`` (``"val_loss"``, ``"val_acc"``, ``"train_loss"``, ``"train_acc"``) after the last epoch."""
        return float(self.histories[label].epochs[-1][metric])


def lecture_model(norm: str | None) -> nn.Sequential:
    """784-32-32-10 with PyTorch's default initialization; ``norm="bn"`` puts ``BatchNorm1d`` between each
    hidden Linear (then without bias) and its ReLU."""
    return mlp(list(LECTURE_RECIPE["sizes"]), norm=norm, init="default")


def lecture_run(data: ImageData, seed: int, *, epochs: int = LECTURE_RECIPE["epochs"],
                n_train: int | None = None) -> LectureRun:
    """Train the plain and the BN network of the recipe with the same seed (same batch order).

    Args:
        data: flattened images; training on ``data.x_train[:n_train]`` (all when ``None``), evaluation after
            every epoch on the whole validation split.
        seed: seeds initialization (``set_seed`` before each model) and batch order.
        epochs: passes over the training set (the recipe: 10).

    Returns:
        A :class:`LectureRun`; each history has one entry per epoch with ``train_loss``/``train_acc`` (means
        over the epoch's mini-batches, in training mode) and ``val_loss``/``val_acc`` (evaluation mode).
    """
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    models, histories = {}, {}
    for label, norm in (("no BN", None), ("BN", "bn")):
        set_seed(seed)
        model = lecture_model(norm)
        histories[label] = train(model, (x, y), epochs=epochs, batch_size=LECTURE_RECIPE["batch_size"],
                                 lr=LECTURE_RECIPE["lr"], optimizer=LECTURE_RECIPE["optimizer"], seed=seed,
                                 eval_on="val", eval_data=(data.x_val, data.y_val), eval_subset=None,
                                 progress=False)
        models[label] = model.eval()
    return LectureRun(seed, models, histories)


def generalization_gap(history: History) -> float:
    """Validation loss minus training loss after the last epoch. The training loss is the mean over the last
    epoch's mini-batches (training mode, what a learner sees in the log); the validation loss is measured in
    evaluation mode."""
    last = history.epochs[-1]
    return float(last["val_loss"] - last["train_loss"])


def batch_vs_running_accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                              batch_size: int = 32, seed: int = 0) -> tuple[float, float]:
    """Accuracy of ``model`` on ``(x, y)`` with BN's statistics taken from random mini-batches of
    ``batch_size`` samples (training mode, as during training) and with its running statistics (evaluation
    mode). The model is left exactly as found (parameters, buffers, modes).

    Shapes: ``x`` (n, features), ``y`` (n,). Both accuracies are over the first ``n - n % batch_size``
    samples, each classified once. Returns ``(accuracy_batch_statistics, accuracy_running_statistics)``.
    """
    if batch_size < 2 or batch_size > len(x):
        raise ValueError(f"batch_size must be in [2, {len(x)}], got {batch_size}")
    n = len(x) - len(x) % batch_size
    x, y = torch.as_tensor(x[:n]), torch.as_tensor(y[:n])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    with preserved(model), torch.no_grad():
        model.train()
        correct = sum(int((model(x[idx]).argmax(1) == y[idx]).sum()) for idx in order.split(batch_size))
    acc_running = evaluate(model, x, y)[1]
    return correct / n, float(acc_running)
