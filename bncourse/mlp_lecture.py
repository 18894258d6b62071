"""The well-known "MLP with and without BatchNorm" lecture, its recipe, and what it shows about BN.

The lecture (the deeplearningzerotoall PyTorch lab "mnist batchnorm"): a 784-32-32-10 MLP with PyTorch's
default initialization, with and without ``BatchNorm1d`` after each hidden Linear layer, Adam with learning rate
0.01, batch size 32, 10 epochs, per-epoch losses and accuracies. Two details differ between its slides and its
code, and both are options here:

* the **order** of each hidden block: the slides draw ``Linear -> BatchNorm1d -> ReLU`` (``order="slides"``,
  the paper's placement; the Linear then has no bias, BN's beta replaces it); the code runs
  ``Linear -> ReLU -> BatchNorm1d`` (``order="code"``; the Linear keeps its bias);
* the **split**: the code trains on all 60 000 training images and validates on the 10 000 test images
  (:func:`lecture_data`), and it reports the training metrics in evaluation mode over the whole training set
  after each epoch (``train_loss_eval``, ``train_acc_eval`` in :func:`lecture_run`'s histories).

The lecture used MNIST; offline the course uses Fashion-MNIST, a harder data set, so the numbers are not
comparable with the lecture's.

Besides the runs themselves the module measures what the chapter claims:

* :func:`generalization_gap`: validation loss minus training loss at the end of a run;
* :func:`batch_vs_running_accuracy`: the accuracy of a trained BN network when it normalizes with the
  statistics of random mini-batches (training mode) versus its running statistics (evaluation mode).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData, load_images
from bncourse.history import History
from bncourse.models import mlp
from bncourse.seeding import torch_generator
from bncourse.state import preserved
from bncourse.training import evaluate, set_seed, train

__all__ = ["LECTURE_RECIPE", "ORDERS", "LectureRun", "lecture_data", "lecture_model", "lecture_run",
           "generalization_gap", "batch_vs_running_accuracy", "LECTURE_MNIST_LOG"]

#: The recipe's hyperparameters.
LECTURE_RECIPE = dict(sizes=(784, 32, 32, 10), optimizer="adam", lr=0.01, batch_size=32, epochs=10)

#: The two orders of a hidden block, as the lecture's slides and the lecture's code draw it.
ORDERS = {"slides": "Linear → BatchNorm1d → ReLU", "code": "Linear → ReLU → BatchNorm1d"}

#: The log that the lecture's code printed on MNIST after epochs 1 and 10 (the code's order, one run), with the
#: training metrics in evaluation mode over the training set and the validation on the test images.
LECTURE_MNIST_LOG = {
    1: {"BN": {"train_loss": 0.14542, "train_acc": 0.9564, "val_loss": 0.15192, "val_acc": 0.9551},
        "no BN": {"train_loss": 0.20199, "train_acc": 0.9424, "val_loss": 0.19679, "val_acc": 0.9432}},
    10: {"BN": {"train_loss": 0.05624, "train_acc": 0.9825, "val_loss": 0.10229, "val_acc": 0.9695},
         "no BN": {"train_loss": 0.10978, "train_acc": 0.9705, "val_loss": 0.18756, "val_acc": 0.9580}},
}


@dataclass
class LectureRun:
    """The networks of one seed: ``models[label]`` and ``histories[label]`` for ``label`` in
    ``("no BN", "BN (slides)", "BN (code)")`` (the BN orders that were run)."""

    seed: int
    models: dict[str, nn.Module]
    histories: dict[str, History]

    def final(self, label: str, metric: str) -> float:
        """``metric`` after the last epoch: ``"val_loss"``, ``"val_acc"``, ``"train_loss"``, ``"train_acc"``
        (training mode, means over the epoch's mini-batches) or ``"train_loss_eval"``, ``"train_acc_eval"``
        (evaluation mode, the whole training set)."""
        return float(self.histories[label].epochs[-1][metric])


def lecture_data(source: str = "fashion-mnist", *, flatten: bool = True) -> ImageData:
    """The lecture's split of ``source`` (``"fashion-mnist"`` or ``"mnist"``): all 60 000 training images for
    training, the 10 000 test images as the validation set (``x_val is x_test``).

    Returns an :class:`~bncourse.data.ImageData` with x_train (60000, 784), x_val = x_test (10000, 784)
    (``flatten=False``: (n, 1, 28, 28)). Raises what :func:`bncourse.data.load_images` raises when the data set
    cannot be had (MNIST is downloaded once; Fashion-MNIST is packaged on the course's machines).
    """
    if source not in ("fashion-mnist", "mnist"):
        raise ValueError(f"the lecture's split needs 'fashion-mnist' or 'mnist', got {source!r}")
    data = load_images(source, flatten=flatten, n_val=0, verbose=False)
    return dataclasses.replace(data, x_val=data.x_test, y_val=data.y_test)


def lecture_model(norm: str | None, order: str = "slides") -> nn.Sequential:
    """784-32-32-10 with PyTorch's default initialization.

    ``norm="bn"`` adds a ``BatchNorm1d`` to each hidden block, placed by ``order``: ``"slides"`` =
    ``Linear -> BatchNorm1d -> ReLU`` (the Linear without bias), ``"code"`` = ``Linear -> ReLU -> BatchNorm1d``
    (the Linear with bias). ``norm=None``: ``Linear -> ReLU`` with biases (``order`` is ignored).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    return mlp(list(LECTURE_RECIPE["sizes"]), norm=norm, init="default",
               norm_position="before" if order == "slides" else "after")


def lecture_run(data: ImageData, seed: int, *, orders: tuple[str, ...] = ("slides", "code"),
                epochs: int = LECTURE_RECIPE["epochs"], n_train: int | None = None) -> LectureRun:
    """Train the plain network and one BN network per ``order`` with the same seed (same batch order).

    Args:
        data: flattened images (e.g. :func:`lecture_data`); training on ``data.x_train[:n_train]`` (all when
            ``None``), evaluation after every epoch on the whole validation split.
        seed: seeds initialization (``set_seed`` before each model) and batch order; shifted by
            ``BNCOURSE_SEED_OFFSET``.
        orders: the BN networks to train, each one of :data:`ORDERS`.
        epochs: passes over the training set (the recipe: 10).

    Returns:
        A :class:`LectureRun` with labels ``"no BN"`` and ``"BN (<order>)"``; each history has one entry per
        epoch with ``train_loss``/``train_acc`` (means over the epoch's mini-batches, in training mode),
        ``train_loss_eval``/``train_acc_eval`` (evaluation mode, the whole training set, as the lecture's code
        reports them) and ``val_loss``/``val_acc`` (evaluation mode).
    """
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    steps_per_epoch = len(x) // LECTURE_RECIPE["batch_size"]
    models, histories = {}, {}
    for label, norm, order in [("no BN", None, "slides")] + [(f"BN ({o})", "bn", o) for o in orders]:
        set_seed(seed)
        model = lecture_model(norm, order)
        train_eval: list[tuple[float, float]] = []

        def on_step(m: nn.Module, step: int, xb, yb, train_eval=train_eval) -> None:
            if step % steps_per_epoch == 0:          # the end of an epoch: eval mode, whole training set
                train_eval.append(evaluate(m, x, y))

        history = train(model, (x, y), epochs=epochs, batch_size=LECTURE_RECIPE["batch_size"],
                        lr=LECTURE_RECIPE["lr"], optimizer=LECTURE_RECIPE["optimizer"], seed=seed,
                        eval_on="val", eval_data=(data.x_val, data.y_val), eval_subset=None,
                        progress=False, step_callback=on_step)
        for record, (loss, acc) in zip(history.epochs, train_eval):
            record["train_loss_eval"], record["train_acc_eval"] = loss, acc
        histories[label] = history
        models[label] = model.eval()
    return LectureRun(seed, models, histories)


def generalization_gap(history: History, *, eval_mode: bool = True) -> float:
    """Validation loss minus training loss after the last epoch. With ``eval_mode`` the training loss is the
    evaluation-mode loss over the whole training set (as the lecture's code reports it); otherwise the mean
    over the last epoch's mini-batches in training mode (what a training log shows)."""
    last = history.epochs[-1]
    return float(last["val_loss"] - last["train_loss_eval" if eval_mode else "train_loss"])


def batch_vs_running_accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                              batch_size: int = 32, seed: int = 0) -> tuple[float, float]:
    """Accuracy of ``model`` on ``(x, y)`` with BN's statistics taken from random mini-batches of
    ``batch_size`` samples (training mode, as during training) and with its running statistics (evaluation
    mode). The model is left exactly as found (parameters, buffers, modes).

    Shapes: ``x`` (n, features), ``y`` (n,). Both accuracies are over the first ``n - n % batch_size``
    samples, each classified once; ``seed`` (shifted by ``BNCOURSE_SEED_OFFSET``) draws the batches.
    Returns ``(accuracy_batch_statistics, accuracy_running_statistics)``.
    """
    if batch_size < 2 or batch_size > len(x):
        raise ValueError(f"batch_size must be in [2, {len(x)}], got {batch_size}")
    n = len(x) - len(x) % batch_size
    x, y = torch.as_tensor(x[:n]), torch.as_tensor(y[:n])
    order = torch.randperm(n, generator=torch_generator(seed))
    with preserved(model), torch.no_grad():
        model.train()
        correct = sum(int((model(x[idx]).argmax(1) == y[idx]).sum()) for idx in order.split(batch_size))
    acc_running = evaluate(model, x, y)[1]
    return correct / n, float(acc_running)
