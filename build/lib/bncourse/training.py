"""A small, seeded training loop for the course's experiments, with evaluation, hooks and divergence detection.

Typical use::

    data = load_images()                                   # Fashion-MNIST (or digits)
    model = mlp([784, 100, 100, 100, 10], activation="sigmoid", norm="bn", init=0.1)
    rec = PercentileRecorder(hidden_preactivations(model)[-1], unit=0)
    hist = train(model, data, steps=3000, lr=0.1, batch_size=60, eval_every=250, hooks=[rec])
    hist.metric("test_acc")        # -> (steps, values)
    hist.steps_to("test_acc", 0.8) # first evaluated step with test accuracy >= 0.8

Everything random (initialization is the caller's, but batch order, dropout, noise) is driven by ``seed``: the
same seed gives the same history, bit for bit, on the same machine and thread count.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData

__all__ = [
    "set_seed",
    "evaluate",
    "train",
    "History",
    "Hook",
    "ActivationRecorder",
    "PercentileRecorder",
    "recompute_bn_statistics",
    "as_tensor_pair",
]

ArrayLike = np.ndarray | torch.Tensor


def _model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter or buffer (float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if torch.is_floating_point(t):
            return t.dtype
    return torch.float32


def _as_input(x: ArrayLike, model: nn.Module) -> torch.Tensor:
    """``x`` as a tensor of the model's floating dtype (float32 data stays float32 for float32 models)."""
    t = torch.as_tensor(x)
    dtype = _model_dtype(model)
    return t if t.dtype == dtype else t.to(dtype)


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode under ``torch.no_grad()``.

    Args:
        model: maps (N, ...) inputs to (N, n_classes) logits.
        x: inputs, (n, ...) array or tensor; y: int labels, (n,).
        batch_size: samples per forward pass (memory only; the result does not depend on it).
        loss_fn: ``(logits, y) -> mean loss``; default cross-entropy.

    Returns:
        ``(loss, accuracy)`` as Python floats. The model's train/eval mode is restored afterwards.
    """
    xt, yt = as_tensor_pair(x, y)
    xt = _as_input(xt, model)
    if len(xt) == 0:
        raise ValueError("evaluate: empty data set")
    loss_fn = loss_fn or nn.functional.cross_entropy
    was_training = model.training
    model.eval()
    try:
        total_loss, correct = 0.0, 0
        for i in range(0, len(xt), batch_size):
            logits = model(xt[i : i + batch_size])
            yb = yt[i : i + batch_size]
            total_loss += float(loss_fn(logits, yb)) * len(yb)
            correct += int((logits.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return total_loss / len(xt), correct / len(xt)


# --------------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------------


@dataclass
class History:
    """What :func:`train` recorded.

    Attributes:
        steps: training steps done (1..n), one per entry of ``train_loss``.
        train_loss: mini-batch loss at each step (before that step's update), float.
        evals: one dict per evaluation point: ``{"step": s, "train_loss", "train_acc", "<eval>_loss",
            "<eval>_acc"}`` with ``<eval>`` = ``"test"`` or ``"val"`` (``train_*`` on a fixed training subset,
            all in eval mode). Step 0 is the untrained model.
        epochs: with ``epochs=`` training, one dict per epoch: ``{"epoch", "step", "train_loss", "train_acc"``
            (means over the epoch's mini-batches, train mode), ``"<eval>_loss", "<eval>_acc"}``.
        diverged: the loss became non-finite (NaN / inf); training stopped at ``diverged_at``.
        config: the arguments of the run (lr, batch_size, seed, ...).
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False
    diverged_at: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one evaluated metric, e.g. ``"test_acc"``; ``"train_loss_per_step"`` gives
        the per-step mini-batch losses."""
        if name == "train_loss_per_step":
            return np.asarray(self.steps), np.asarray(self.train_loss)
        if not self.evals:
            raise KeyError(f"no evaluations recorded (pass eval_every= to train); cannot get {name!r}")
        if name not in self.evals[0]:
            raise KeyError(f"unknown metric {name!r}; recorded: {sorted(self.evals[0])}")
        return (np.asarray([e["step"] for e in self.evals]),
                np.asarray([e[name] for e in self.evals], dtype=float))

    def steps_to(self, metric: str, threshold: float, *, mode: str = "max") -> int | None:
        """First evaluated step at which ``metric >= threshold`` (``mode="max"``, for accuracies) or
        ``<= threshold`` (``mode="min"``, for losses); ``None`` if never reached."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        steps, values = self.metric(metric)
        hit = values >= threshold if mode == "max" else values <= threshold
        idx = np.flatnonzero(hit)
        return int(steps[idx[0]]) if len(idx) else None

    def final(self, metric: str) -> float:
        """Value of ``metric`` at the last evaluation."""
        return float(self.metric(metric)[1][-1])

    def best(self, metric: str, *, mode: str = "max") -> float:
        """Best value of ``metric`` over the evaluations (max, or min with ``mode="min"``)."""
        values = self.metric(metric)[1]
        return float(np.nanmax(values) if mode == "max" else np.nanmin(values))

    def epoch_table(self) -> str:
        """The per-epoch summaries as a plain-text table (one line per epoch)."""
        if not self.epochs:
            return "(no epoch summaries: train with epochs=...)"
        keys = list(self.epochs[0])
        lines = ["  ".join(f"{k:>10}" for k in keys)]
        for e in self.epochs:
            lines.append("  ".join(f"{e[k]:>10.4f}" if isinstance(e[k], float) else f"{e[k]:>10}" for k in keys))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------------


class Hook(Protocol):
    """What :func:`train` calls at each evaluation point: ``hook(model, step, x_eval)``.

    ``model`` is in eval mode, gradients are off, ``x_eval`` is the evaluation subset (a tensor).
    """

    def __call__(self, model: nn.Module, step: int, x_eval: torch.Tensor) -> None: ...


class ActivationRecorder:
    """Records a summary of one module's forward output at each evaluation point.

    Args:
        module: the module to watch (e.g. an entry of ``bncourse.models.hidden_preactivations(model)``).
        reduce: ``output tensor (N, C, ...) -> np.ndarray or float``; default: the whole output as a NumPy
            array (memory grows with every record — pass a reduction for long runs).

    Attributes:
        steps: the steps recorded; values: the reductions, in the same order.

    Use it as a :func:`train` hook, or directly: ``rec.record(model, x, step=0)``.
    """

    def __init__(self, module: nn.Module, reduce: Callable[[torch.Tensor], Any] | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        self.reduce = reduce or (lambda out: out.detach().cpu().numpy().copy())
        self.steps: list[int] = []
        self.values: list[Any] = []

    @torch.no_grad()
    def record(self, model: nn.Module, x: ArrayLike, step: int, *, train_mode: bool = False) -> Any:
        """Run ``model(x)`` (eval mode unless ``train_mode``; mode restored; no BN buffer update in eval
        mode) and store ``reduce(module output)`` for ``step``. Returns the stored value."""
        captured: list[torch.Tensor] = []
        handle = self.module.register_forward_hook(lambda _m, _inp, out: captured.append(out))
        was_training = model.training
        model.train(train_mode)
        try:
            model(_as_input(x, model))
        finally:
            handle.remove()
            model.train(was_training)
        if len(captured) != 1:
            raise RuntimeError(f"the watched module ran {len(captured)} times in one forward pass (expected 1): "
                               "is it part of this model?")
        value = self.reduce(captured[0])
        self.steps.append(int(step))
        self.values.append(value)
        return value

    def __call__(self, model: nn.Module, step: int, x_eval: torch.Tensor) -> None:
        self.record(model, x_eval, step)


class PercentileRecorder(ActivationRecorder):
    """Percentiles of one unit's values (e.g. the input of a sigmoid) over the evaluation batch — Ioffe &
    Szegedy Fig. 1(b, c).

    Args:
        module: module whose output is watched (``hidden_preactivations(model)[-1]`` = last hidden layer).
        unit: which feature (column / channel) to follow.
        q: percentiles in [0, 100], computed like ``np.percentile`` (linear interpolation) over the batch
            (and spatial positions, for (N, C, H, W) outputs).

    Attributes:
        steps: list of steps; ``percentiles``: array (n_records, len(q)).
    """

    def __init__(self, module: nn.Module, unit: int = 0, q: Sequence[float] = (15, 50, 85)):
        self.unit = int(unit)
        self.q = tuple(float(v) for v in q)
        if not all(0 <= v <= 100 for v in self.q):
            raise ValueError(f"percentiles must lie in [0, 100], got {self.q}")
        super().__init__(module, reduce=self._percentiles)

    def _percentiles(self, out: torch.Tensor) -> np.ndarray:
        if out.ndim < 2 or not 0 <= self.unit < out.shape[1]:
            raise IndexError(f"unit {self.unit} out of range for output of shape {tuple(out.shape)}")
        values = out[:, self.unit].detach().reshape(-1).double().cpu().numpy()
        return np.percentile(values, self.q)

    @property
    def percentiles(self) -> np.ndarray:
        """(n_records, len(q)) array of the recorded percentiles."""
        return np.asarray(self.values, dtype=float).reshape(len(self.values), len(self.q))

    def spread(self, low: int = 0, high: int = -1) -> np.ndarray:
        """Distance between two recorded percentiles (default: first and last of ``q``) at each record."""
        p = self.percentiles
        return p[:, high] - p[:, low]


# --------------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------------


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is installed with Jupyter
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _progress_wanted(progress: bool | None) -> bool:
    """``None`` = auto: a bar only in a Jupyter kernel, and never when ``CI`` is set or
    ``BNCOURSE_PROGRESS=0``."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI") or os.environ.get("BNCOURSE_PROGRESS", "").lower() in ("0", "false", "off", "no"):
        return False
    return _in_notebook()


def _unpack(data: ImageData | tuple, eval_on: str, eval_data: tuple | None) -> tuple:
    """-> (x_train, y_train, x_eval, y_eval or None, eval_name) as tensors."""
    if isinstance(data, ImageData):
        xtr, ytr = as_tensor_pair(data.x_train, data.y_train)
        if eval_data is None:
            if eval_on not in ("test", "val"):
                raise ValueError(f"eval_on must be 'test' or 'val', got {eval_on!r}")
            ex, ey = (data.x_test, data.y_test) if eval_on == "test" else (data.x_val, data.y_val)
            if len(ex) == 0:
                raise ValueError(f"eval_on={eval_on!r} but the data has no {eval_on} images")
            xe, ye = as_tensor_pair(ex, ey)
            return xtr, ytr, xe, ye, eval_on
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        xtr, ytr = as_tensor_pair(*data)
    else:
        raise TypeError("data must be an ImageData or a pair (x, y) of arrays/tensors")
    if eval_data is not None:
        xe, ye = as_tensor_pair(*eval_data)
        return xtr, ytr, xe, ye, eval_on
    return xtr, ytr, None, None, eval_on


def train(
    model: nn.Module,
    data: ImageData | tuple[ArrayLike, ArrayLike],
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 60,
    lr: float = 0.1,
    optimizer: str | torch.optim.Optimizer = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    eval_every: int | None = None,
    eval_on: str = "test",
    eval_subset: int | None = 2000,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    hooks: Iterable[Hook] = (),
    progress: bool | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    stop_on_nonfinite: bool = True,
    step_callback: Callable[[nn.Module, int, torch.Tensor, torch.Tensor], None] | None = None,
) -> History:
    """Train ``model`` with mini-batch SGD (or Adam) and record a :class:`History`.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits (N, n_classes). Modified in place.
        data: an :class:`~bncourse.data.ImageData` or a pair ``(x, y)`` (arrays or tensors).
        steps / epochs: how long to train; exactly one of them. An epoch is ``n // batch_size`` mini-batches
            of a fresh random permutation (the last incomplete batch is dropped, so BN never sees a batch of
            one); ``steps`` runs through as many epochs as needed.
        batch_size: samples per mini-batch. lr, momentum, weight_decay: optimizer settings.
        optimizer: ``"sgd"`` (``torch.optim.SGD``), ``"adam"`` or an already constructed optimizer.
        seed: seeds batch order and any randomness in the forward pass (dropout, noise layers); the model's
            initialization is done by the caller (call :func:`set_seed` before building it).
        eval_every: evaluate every this many steps (and at step 0 and at the end); ``None`` = only with
            ``epochs`` (at the end of each epoch) or never.
        eval_on: ``"test"`` or ``"val"`` split of an ImageData (metric names ``test_acc`` / ``val_acc`` ...).
        eval_subset: evaluate on the first this-many images of the eval split and on a fixed random subset of
            the same size of the training set (``None`` = all).
        eval_data: ``(x, y)`` evaluation set to use instead (e.g. with raw ``(x, y)`` training data); its
            metrics are named after ``eval_on``.
        hooks: callables ``hook(model, step, x_eval)`` run at each evaluation point (model in eval mode,
            no grad), e.g. :class:`PercentileRecorder`.
        progress: tqdm bar (``tqdm.auto``: a widget in Jupyter); ``None`` = auto (only in a Jupyter kernel,
            off when the ``CI`` environment variable is set or ``BNCOURSE_PROGRESS=0``).
        loss_fn: ``(logits, y) -> mean loss``; default cross-entropy.
        stop_on_nonfinite: stop (``history.diverged = True``) when the loss becomes NaN/inf instead of
            continuing; with ``False`` training continues and the flag is still set.
        step_callback: ``f(model, step, xb, yb)`` called after each optimizer step (for custom measurements).

    Returns:
        The :class:`History`. The model is left in train mode.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    xtr, ytr, xev, yev, eval_name = _unpack(data, eval_on, eval_data)
    xtr = _as_input(xtr, model)
    xev = _as_input(xev, model) if xev is not None else None
    n = len(xtr)
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (number of training samples)")
    per_epoch = n // batch_size
    total = int(steps) if steps is not None else int(epochs) * per_epoch
    if total < 0:
        raise ValueError(f"steps/epochs must be >= 0, got {steps if steps is not None else epochs}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 or None, got {eval_every}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    hooks = list(hooks)

    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'sgd', 'adam' or a torch.optim.Optimizer")

    gen = torch.Generator().manual_seed(seed)
    # fixed evaluation subsets
    if xev is not None and eval_subset is not None:
        xev, yev = xev[:eval_subset], yev[:eval_subset]
    tr_idx = torch.randperm(n, generator=gen)[: eval_subset if eval_subset is not None else n].sort().values
    xtr_eval, ytr_eval = xtr[tr_idx], ytr[tr_idx]

    history = History(config=dict(steps=total, epochs=epochs, batch_size=batch_size, lr=lr,
                                  optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
                                  momentum=momentum, weight_decay=weight_decay, seed=seed, eval_every=eval_every,
                                  eval_on=eval_name, eval_subset=eval_subset))

    def do_eval(step: int) -> dict[str, float]:
        rec: dict[str, float] = {"step": step}
        rec["train_loss"], rec["train_acc"] = evaluate(model, xtr_eval, ytr_eval, loss_fn=loss_fn)
        if xev is not None:
            rec[f"{eval_name}_loss"], rec[f"{eval_name}_acc"] = evaluate(model, xev, yev, loss_fn=loss_fn)
            x_hook = xev
        else:
            x_hook = xtr_eval
        if hooks:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    for hook in hooks:
                        hook(model, step, x_hook)
            finally:
                model.train(was_training)
        return rec

    bar = None
    if _progress_wanted(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="training", leave=False)

    # Seed the global RNG too (dropout / noise layers draw from it), restoring the caller's state afterwards.
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    model.train()
    try:
        if eval_every is not None:
            history.evals.append(do_eval(0))
        step = 0
        epoch = 0
        while step < total:
            perm = torch.randperm(n, generator=gen)
            epoch += 1
            ep_loss, ep_correct, ep_seen = 0.0, 0, 0
            for b in range(per_epoch):
                if step >= total:
                    break
                idx = perm[b * batch_size : (b + 1) * batch_size]
                xb, yb = xtr[idx], ytr[idx]
                logits = model(xb)
                loss = loss_fn(logits, yb)
                loss_value = loss.detach().item()
                step += 1
                history.steps.append(step)
                history.train_loss.append(loss_value)
                if not math.isfinite(loss_value):
                    history.diverged = True
                    if history.diverged_at is None:
                        history.diverged_at = step
                    if stop_on_nonfinite:
                        break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step_callback is not None:
                    step_callback(model, step, xb, yb)
                ep_loss += loss_value * len(yb)
                ep_correct += int((logits.detach().argmax(1) == yb).sum())
                ep_seen += len(yb)
                if bar is not None:
                    bar.update(1)
                    if step % 50 == 0:
                        bar.set_postfix(loss=f"{loss_value:.3f}")
                if eval_every is not None and (step % eval_every == 0 or step == total):
                    history.evals.append(do_eval(step))
            if history.diverged and stop_on_nonfinite:
                break
            if epochs is not None and ep_seen == per_epoch * batch_size:
                summary: dict[str, float] = {"epoch": epoch, "step": step, "train_loss": ep_loss / ep_seen,
                                             "train_acc": ep_correct / ep_seen}
                if xev is not None:
                    summary[f"{eval_name}_loss"], summary[f"{eval_name}_acc"] = evaluate(model, xev, yev,
                                                                                         loss_fn=loss_fn)
                history.epochs.append(summary)
    finally:
        torch.set_rng_state(rng_state)
        if bar is not None:
            bar.close()
    return history


# --------------------------------------------------------------------------------------------------
# Re-estimating BN statistics (PreciseBN / AdaBN)
# --------------------------------------------------------------------------------------------------


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    """Every BN-like module with running statistics (torch.nn's and the course's, found by duck typing)."""
    found = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            found.append(m)
        elif all(hasattr(m, a) for a in ("running_mean", "running_var", "momentum")) and \
                getattr(m, "running_mean", None) is not None:
            found.append(m)
    return found


@torch.no_grad()
def recompute_bn_statistics(
    model: nn.Module,
    batches_or_x: ArrayLike | Iterable[ArrayLike],
    batch_size: int = 200,
    momentum: float | None = None,
    max_batches: int | None = None,
) -> int:
    """Re-estimate the running statistics of every BatchNorm layer of ``model`` (PreciseBN / AdaBN).

    Resets ``running_mean``/``running_var``/``num_batches_tracked``, then runs forward passes in train mode
    without gradients. With ``momentum=None`` (default) PyTorch keeps a *cumulative* average:
    ``running_mean`` = mean over batches of the batch means and ``running_var`` = mean of the unbiased batch
    variances (Ioffe & Szegedy's Algorithm 2, E_B[μ_B] and m/(m-1)·E_B[σ²_B]). With equal-size batches and a
    single BN layer fed directly by the data, ``running_mean`` equals the data mean exactly.

    Args:
        model: a model containing BN layers; its mode and BN momenta are restored afterwards; nothing but
            the BN buffers changes (no parameter is touched).
        batches_or_x: either an array/tensor ``x`` (split into consecutive batches of ``batch_size``; a last
            incomplete batch is dropped so every batch has the same weight), or an iterable of input batches
            (tensors/arrays, or ``(x, y)`` tuples whose first entry is used).
        batch_size: batch size when ``batches_or_x`` is one array.
        momentum: ``None`` = cumulative average; a float = exponential moving average with that momentum.
        max_batches: use at most this many batches.

    Returns:
        Number of batches used.
    """
    bns = _bn_modules(model)
    if not bns:
        raise ValueError("recompute_bn_statistics: the model has no BatchNorm layer with running statistics")
    if isinstance(batches_or_x, (np.ndarray, torch.Tensor)):
        x = _as_input(batches_or_x, model)
        n_full = len(x) // batch_size
        if n_full == 0:
            raise ValueError(f"need at least batch_size={batch_size} samples, got {len(x)}")
        batches: Iterable = (x[i * batch_size : (i + 1) * batch_size] for i in range(n_full))
    else:
        batches = batches_or_x
    saved = [(m, m.momentum) for m in bns]
    was_training = model.training
    used = 0
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = momentum
        model.train()
        for b in batches:
            if max_batches is not None and used >= max_batches:
                break
            if isinstance(b, (tuple, list)):
                b = b[0]
            model(_as_input(b, model))
            used += 1
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was_training)
    if used == 0:
        raise ValueError("recompute_bn_statistics: no batches given")
    return used
