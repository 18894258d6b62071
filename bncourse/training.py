"""A small, seeded training loop for the course's experiments, with evaluation, hooks and divergence detection.

Typical use::

    data = load_images()                                   # Fashion-MNIST (or digits)
    model = mlp([784, 100, 100, 100, 10], activation="sigmoid", norm="bn", init=0.1)
    rec = PercentileRecorder(hidden_preactivations(model)[-1], unit=0)   # bncourse.recorders
    hist = train(model, data, steps=3000, lr=0.1, batch_size=60, eval_every=250, hooks=[rec])
    hist.metric("test_acc")        # -> (steps, values)
    hist.steps_to("test_acc", 0.8) # first evaluated step with test accuracy >= 0.8

Everything random (initialization is the caller's, but batch order, dropout, noise) is driven by ``seed``: the
same seed gives the same history, bit for bit, on the same machine and thread count.

:func:`train` is assembled from three parts that can be used alone: :func:`make_optimizer` (the optimizer),
:func:`epoch_batches` (the order of the mini-batches) and :class:`Evaluation` (what is measured at an
evaluation point, hooks included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData
from bncourse.history import History
from bncourse.progress import ProgressBar
from bncourse.recorders import Hook
# set_seed, seed_offset and SEED_OFFSET_ENV are re-exported: their home is bncourse.seeding.
from bncourse.seeding import SEED_OFFSET_ENV, seed_offset, set_seed, shifted, torch_generator  # noqa: F401
from bncourse.state import as_model_input, preserved

__all__ = [
    "evaluate",
    "train",
    "make_optimizer",
    "epoch_batches",
    "Evaluation",
    "as_tensor_pair",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[nn.Module, int, torch.Tensor, torch.Tensor], None]

ArrayLike = np.ndarray | torch.Tensor


def as_tensor_pair(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as float32 / int64 tensors (no copy when already so); checks that the lengths agree."""
    xt = torch.as_tensor(x)
    if not torch.is_floating_point(xt):
        xt = xt.float()
    elif xt.dtype != torch.float32:
        xt = xt.to(torch.float32)
    yt = torch.as_tensor(y)
    if yt.dtype != torch.int64:
        if torch.is_floating_point(yt):
            raise TypeError(f"labels must be integers, got dtype {yt.dtype}")
        yt = yt.long()
    if yt.ndim != 1 or len(xt) != len(yt):
        raise ValueError(f"x has {len(xt)} samples, y has shape {tuple(yt.shape)}: need y of shape ({len(xt)},)")
    return xt, yt


@torch.no_grad()
def evaluate(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 2000,
    loss_fn: LossFn | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode under ``torch.no_grad()``.

    Args:
        model: maps (N, ...) inputs to (N, n_classes) logits.
        x: inputs, (n, ...) array or tensor; y: int labels, (n,).
        batch_size: samples per forward pass (memory only; the result does not depend on it).
        loss_fn: ``(logits, y) -> mean loss``; default cross-entropy.

    Returns:
        ``(loss, accuracy)`` as Python floats. The train/eval modes of the model are restored afterwards.
    """
    xt, yt = as_tensor_pair(x, y)
    xt = as_model_input(xt, model)
    if len(xt) == 0:
        raise ValueError("evaluate: empty data set")
    loss_fn = loss_fn or nn.functional.cross_entropy
    total_loss, correct = 0.0, 0
    with preserved(model, params=False, buffers=False, rng=False):
        model.eval()
        for i in range(0, len(xt), batch_size):
            logits = model(xt[i : i + batch_size])
            yb = yt[i : i + batch_size]
            total_loss += float(loss_fn(logits, yb)) * len(yb)
            correct += int((logits.argmax(dim=1) == yb).sum())
    return total_loss / len(xt), correct / len(xt)


# --------------------------------------------------------------------------------------------------
# The parts of the training loop: optimizer, mini-batches, evaluation
# --------------------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, optimizer: str | torch.optim.Optimizer = "sgd", *, lr: float = 0.1,
                   sgd_momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer over ``model.parameters()``: ``"sgd"`` (``torch.optim.SGD`` with momentum
    ``sgd_momentum`` -- the optimizer's, not BatchNorm's), ``"adam"``, or an already constructed optimizer
    (returned as it is)."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=sgd_momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; expected 'sgd', 'adam' or a torch.optim.Optimizer")


def epoch_batches(n: int, batch_size: int, total: int, generator: torch.Generator) -> Iterator[list[torch.Tensor]]:
    """The mini-batches of a run of ``total`` steps over ``n`` samples, epoch by epoch.

    Each epoch draws a fresh permutation from ``generator`` and yields the list of its index tensors,
    each of shape (batch_size,): ``n // batch_size`` of them (the last incomplete batch is dropped, so BN
    never sees a batch of one), fewer in the last epoch when ``total`` ends it early.
    """
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (number of training samples)")
    done = 0
    while done < total:
        perm = torch.randperm(n, generator=generator)
        k = min(per_epoch, total - done)
        yield [perm[b * batch_size : (b + 1) * batch_size] for b in range(k)]
        done += k


@dataclass
class _Split:
    """Training tensors and the evaluation split, ``x_eval``/``y_eval`` ``None`` when there is none."""

    x: torch.Tensor
    y: torch.Tensor
    x_eval: torch.Tensor | None
    y_eval: torch.Tensor | None
    eval_name: str


def _split(data: ImageData | tuple, eval_on: str, eval_data: tuple | None) -> _Split:
    """The training pair and the evaluation pair of ``data`` / ``eval_data`` as tensors."""
    if isinstance(data, ImageData):
        x, y = as_tensor_pair(data.x_train, data.y_train)
        if eval_data is None:
            if eval_on not in ("test", "val"):
                raise ValueError(f"eval_on must be 'test' or 'val', got {eval_on!r}")
            ex, ey = (data.x_test, data.y_test) if eval_on == "test" else (data.x_val, data.y_val)
            if len(ex) == 0:
                raise ValueError(f"eval_on={eval_on!r} but the data has no {eval_on} images")
            return _Split(x, y, *as_tensor_pair(ex, ey), eval_on)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = as_tensor_pair(*data)
    else:
        raise TypeError("data must be an ImageData or a pair (x, y) of arrays/tensors")
    if eval_data is not None:
        return _Split(x, y, *as_tensor_pair(*eval_data), eval_on)
    return _Split(x, y, None, None, eval_on)


@dataclass
class Evaluation:
    """What :func:`train` measures at an evaluation point, on fixed data (all in eval mode, no grad).

    Attributes:
        model: the network; loss_fn: ``(logits, y) -> mean loss``.
        x_train, y_train: a fixed subset of the training set (metrics ``train_loss``, ``train_acc``).
        x_eval, y_eval: the evaluation split or ``None`` (metrics ``<eval_name>_loss``, ``<eval_name>_acc``).
        hooks: called ``hook(model, step, x)`` after the metrics, ``x`` the evaluation inputs (or the
            training subset when there is no evaluation split).
    """

    model: nn.Module
    loss_fn: LossFn
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor | None = None
    y_eval: torch.Tensor | None = None
    eval_name: str = "test"
    hooks: list[Hook] = field(default_factory=list)

    def split_metrics(self) -> dict[str, float]:
        """``{"<eval_name>_loss", "<eval_name>_acc"}`` on the evaluation split (empty without one)."""
        if self.x_eval is None:
            return {}
        loss, acc = evaluate(self.model, self.x_eval, self.y_eval, loss_fn=self.loss_fn)
        return {f"{self.eval_name}_loss": loss, f"{self.eval_name}_acc": acc}

    def __call__(self, step: int) -> dict[str, float]:
        """The evaluation record of ``step``: training-subset and split metrics; then runs the hooks."""
        record: dict[str, float] = {"step": step}
        record["train_loss"], record["train_acc"] = evaluate(self.model, self.x_train, self.y_train,
                                                             loss_fn=self.loss_fn)
        record.update(self.split_metrics())
        if self.hooks:
            x_hook = self.x_eval if self.x_eval is not None else self.x_train
            with preserved(self.model, params=False, buffers=False, rng=False), torch.no_grad():
                self.model.eval()
                for hook in self.hooks:
                    hook(self.model, step, x_hook)
        return record


def _callbacks(step_callback: StepCallback | Iterable[StepCallback] | None) -> list[StepCallback]:
    if step_callback is None:
        return []
    return [step_callback] if callable(step_callback) else list(step_callback)


# --------------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    data: ImageData | tuple[ArrayLike, ArrayLike],
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 60,
    lr: float = 0.1,
    optimizer: str | torch.optim.Optimizer = "sgd",
    sgd_momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    eval_every: int | None = None,
    eval_on: str = "test",
    eval_subset: int | None = 2000,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    hooks: Iterable[Hook] = (),
    progress: bool | None = None,
    loss_fn: LossFn | None = None,
    stop_on_nonfinite: bool = True,
    step_callback: StepCallback | Iterable[StepCallback] | None = None,
) -> History:
    """Train ``model`` with mini-batch SGD (or Adam) and record a :class:`~bncourse.history.History`.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits (N, n_classes). Modified in place.
        data: an :class:`~bncourse.data.ImageData` or a pair ``(x, y)`` (arrays or tensors).
        steps / epochs: how long to train; exactly one of them. An epoch is ``n // batch_size`` mini-batches
            of a fresh random permutation (:func:`epoch_batches`); ``steps`` runs through as many epochs as
            needed.
        batch_size: samples per mini-batch.
        lr, sgd_momentum, weight_decay, optimizer: see :func:`make_optimizer`. ``sgd_momentum`` is the
            optimizer's momentum; BatchNorm's ``momentum`` is a property of the BN layers.
        seed: seeds batch order and any randomness in the forward pass (dropout, noise layers); the model's
            initialization is done by the caller (call :func:`bncourse.seeding.set_seed` before building it). Like
            :func:`bncourse.seeding.set_seed`, shifted by ``BNCOURSE_SEED_OFFSET``.
        eval_every: evaluate every this many steps (and at step 0 and at the end); ``None`` = only with
            ``epochs`` (at the end of each epoch) or never.
        eval_on: ``"test"`` or ``"val"`` split of an ImageData (metric names ``test_acc`` / ``val_acc`` ...).
        eval_subset: evaluate on the first this-many images of the eval split and on a fixed random subset of
            the same size of the training set (``None`` = all).
        eval_data: ``(x, y)`` evaluation set to use instead (e.g. with raw ``(x, y)`` training data); its
            metrics are named after ``eval_on``.
        hooks: called ``hook(model, step, x_eval)`` at each evaluation point (model in eval mode, no grad),
            e.g. a :class:`~bncourse.recorders.PercentileRecorder`.
        progress: tqdm bar (``tqdm.auto``: a widget in Jupyter); ``None`` = auto (only in a Jupyter kernel,
            off when the ``CI`` environment variable is set or ``BNCOURSE_PROGRESS=0``).
        loss_fn: ``(logits, y) -> mean loss``; default cross-entropy.
        stop_on_nonfinite: stop (``history.diverged = True``) when the loss becomes NaN/inf instead of
            continuing; with ``False`` training continues and the flag is still set.
        step_callback: ``f(model, step, xb, yb)``, or a list of them, called after each optimizer step (for
            custom measurements, e.g. a :class:`~bncourse.landscape.LandscapeProbe` or a recorder).

    Returns:
        The :class:`~bncourse.history.History`. The model is left in train mode; the global torch RNG is as before the call.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    split = _split(data, eval_on, eval_data)
    x, y = as_model_input(split.x, model), split.y
    n = len(x)
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (number of training samples)")
    total = int(steps) if steps is not None else int(epochs) * (n // batch_size)
    if total < 0:
        raise ValueError(f"steps/epochs must be >= 0, got {steps if steps is not None else epochs}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 or None, got {eval_every}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    callbacks = _callbacks(step_callback)
    opt = make_optimizer(model, optimizer, lr=lr, sgd_momentum=sgd_momentum, weight_decay=weight_decay)
    gen = torch_generator(seed)                       # BNCOURSE_SEED_OFFSET shifts the batch order too
    evaluation = _evaluation(model, loss_fn, x, y, split, eval_subset, gen, list(hooks))
    history = History(config=dict(steps=total, epochs=epochs, batch_size=batch_size, lr=lr,
                                  optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
                                  sgd_momentum=sgd_momentum, weight_decay=weight_decay, seed=seed,
                                  eval_every=eval_every, eval_on=split.eval_name, eval_subset=eval_subset))
    bar = ProgressBar(progress, total)
    # The global RNG drives dropout / noise layers: seed it for the run, give the caller's state back after.
    with preserved(model, params=False, buffers=False, modes=False):
        torch.manual_seed(shifted(seed))
        model.train()
        try:
            if eval_every is not None:
                history.evals.append(evaluation(0))
            step = 0
            for epoch, batches in enumerate(epoch_batches(n, batch_size, total, gen), start=1):
                ep_loss, ep_correct, ep_seen = 0.0, 0, 0
                for idx in batches:
                    xb, yb = x[idx], y[idx]
                    step += 1
                    loss_value, logits = _step(model, opt, loss_fn, xb, yb, history, step, stop_on_nonfinite)
                    if logits is None:
                        break
                    for callback in callbacks:
                        callback(model, step, xb, yb)
                    ep_loss += loss_value * len(yb)
                    ep_correct += int((logits.argmax(1) == yb).sum())
                    ep_seen += len(yb)
                    bar.update(step, loss_value)
                    if eval_every is not None and (step % eval_every == 0 or step == total):
                        history.evals.append(evaluation(step))
                if history.diverged and stop_on_nonfinite:
                    break
                if epochs is not None and ep_seen == (n // batch_size) * batch_size:
                    history.epochs.append({"epoch": epoch, "step": step, "train_loss": ep_loss / ep_seen,
                                           "train_acc": ep_correct / ep_seen, **evaluation.split_metrics()})
        finally:
            bar.close()
    return history


def _evaluation(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, split: _Split,
                eval_subset: int | None, gen: torch.Generator, hooks: list[Hook]) -> Evaluation:
    """The :class:`Evaluation` of a run: the first ``eval_subset`` evaluation samples and a random training
    subset of the same size (drawn from ``gen``, sorted, fixed for the run)."""
    x_eval = as_model_input(split.x_eval, model) if split.x_eval is not None else None
    y_eval = split.y_eval
    if x_eval is not None and eval_subset is not None:
        x_eval, y_eval = x_eval[:eval_subset], y_eval[:eval_subset]
    n = len(x)
    tr_idx = torch.randperm(n, generator=gen)[: eval_subset if eval_subset is not None else n].sort().values
    return Evaluation(model, loss_fn, x[tr_idx], y[tr_idx], x_eval, y_eval, split.eval_name, hooks)


def _step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, xb: torch.Tensor, yb: torch.Tensor,
          history: History, step: int, stop_on_nonfinite: bool) -> tuple[float, torch.Tensor | None]:
    """One optimizer step on ``(xb, yb)``, recorded in ``history``. Returns ``(loss, detached logits)``;
    logits ``None`` when the loss is not finite and the run stops there (no update is made then)."""
    logits = model(xb)
    loss = loss_fn(logits, yb)
    loss_value = loss.detach().item()
    history.steps.append(step)
    history.train_loss.append(loss_value)
    if not math.isfinite(loss_value):
        history.diverged = True
        if history.diverged_at is None:
            history.diverged_at = step
        if stop_on_nonfinite:
            return loss_value, None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss_value, logits.detach()
