"""BatchNorm's running statistics after training: re-estimating them (PreciseBN) and adapting them to a
shifted input distribution (AdaBN, Li et al. 2016) -- chapter 2's BatchNorm bridge.

* :func:`recompute_bn_statistics` -- reset every BN layer's running statistics and re-estimate them
  from forward passes (cumulative average by default: Ioffe & Szegedy's Algorithm 2);
* :func:`adabn_evaluate` -- accuracy of a trained BN model on source images, on shifted images with the
  source statistics (stale), and after recomputing the statistics on unlabeled shifted images;
* :func:`adabn_experiment` -- train one BN MLP and evaluate it under several shifts
  (default :data:`bncourse.shift.CHAPTER2_SHIFTS`).

The image shifts themselves (:func:`bncourse.shift.shift_images`) are NumPy and live with the other
dataset-shift tools in :mod:`bncourse.shift`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.shift import CHAPTER2_SHIFTS, shift_images
from bncourse.state import as_model_input, batchnorm_layers, preserved

__all__ = ["recompute_bn_statistics", "AdaBNResult", "adabn_evaluate", "adabn_experiment"]

ArrayLike = np.ndarray | torch.Tensor


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
        model: a model containing BN layers; its modes and BN momenta are restored afterwards; nothing but
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
    bns = batchnorm_layers(model)
    if not bns:
        raise ValueError("recompute_bn_statistics: the model has no BatchNorm layer with running statistics")
    if isinstance(batches_or_x, (np.ndarray, torch.Tensor)):
        x = as_model_input(batches_or_x, model)
        n_full = len(x) // batch_size
        if n_full == 0:
            raise ValueError(f"need at least batch_size={batch_size} samples, got {len(x)}")
        batches: Iterable = (x[i * batch_size : (i + 1) * batch_size] for i in range(n_full))
    else:
        batches = batches_or_x
    momenta = [m.momentum for m in bns]
    used = 0
    with preserved(model, params=False, buffers=False, rng=False):
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
                model(as_model_input(b, model))
                used += 1
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
    if used == 0:
        raise ValueError("recompute_bn_statistics: no batches given")
    return used


@dataclass(frozen=True)
class AdaBNResult:
    """Accuracies of one BN network: on the ``source`` test images, on the shifted (target) test
    images with the source running statistics (``stale``), and after recomputing the running
    statistics on unlabeled target images (``adabn``)."""

    source: float
    stale: float
    adabn: float

    def __repr__(self) -> str:
        return f"AdaBNResult(source={self.source:.3f}, stale={self.stale:.3f}, adabn={self.adabn:.3f})"


def adabn_evaluate(model: nn.Module, data: Any, *, n_adapt: int = 5000, n_eval: int = 5000,
                   **shift: Any) -> AdaBNResult:
    """Evaluate a trained BN ``model`` on source and shifted test images, before and after AdaBN.

    ``data`` is a ``bncourse.data.ImageData`` with flat images (n, H*W); ``shift`` are the keyword
    arguments of :func:`bncourse.shift.shift_images`. Test images: the first ``n_eval`` of ``data.x_test``
    (and their shifted copies). AdaBN re-estimates every BN layer's running statistics
    (:func:`recompute_bn_statistics`) on the first ``n_adapt`` shifted *validation* images (labels unused;
    images the evaluation never sees) in a copy of ``model``; ``model`` itself is not changed.
    """
    from bncourse.training import evaluate

    if n_adapt < 2 or n_eval < 1:
        raise ValueError("n_adapt must be >= 2 and n_eval >= 1")
    x_eval, y_eval = data.x_test[:n_eval], data.y_test[:n_eval]
    x_eval_target = shift_images(x_eval, **shift)
    x_adapt_target = shift_images(data.x_val[:n_adapt], **shift)
    source_acc = evaluate(model, x_eval, y_eval)[1]
    stale_acc = evaluate(model, x_eval_target, y_eval)[1]
    adapted = copy.deepcopy(model)
    recompute_bn_statistics(adapted, x_adapt_target, batch_size=min(200, len(x_adapt_target)))
    return AdaBNResult(source_acc, stale_acc, evaluate(adapted, x_eval_target, y_eval)[1])


def adabn_experiment(
    data: Any,
    shifts: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    hidden: Sequence[int] = (100, 100),
    steps: int = 1000,
    batch_size: int = 60,
    lr: float = 0.1,
    seed: int = 0,
    n_adapt: int = 5000,
    n_eval: int = 5000,
) -> dict[str, AdaBNResult]:
    """Train one BN MLP on the source images, then :func:`adabn_evaluate` it under each shift.

    The model is ``mlp([H*W, *hidden, n_classes], activation="relu", norm="bn")`` (He init, seeded
    with ``seed``), trained with SGD by :func:`bncourse.training.train`. ``shifts`` maps a name to
    :func:`bncourse.shift.shift_images` keyword arguments (default :data:`bncourse.shift.CHAPTER2_SHIFTS`).
    Returns ``{name: AdaBNResult}``.
    """
    from bncourse.models import mlp
    from bncourse.training import set_seed, train

    if data.x_train.ndim != 2:
        raise ValueError(f"adabn_experiment needs flat images (n, H*W); got x_train of shape {data.x_train.shape}")
    shifts = CHAPTER2_SHIFTS if shifts is None else shifts
    set_seed(seed)
    model = mlp([data.x_train.shape[1], *hidden, data.n_classes], activation="relu", norm="bn")
    train(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=False)
    return {name: adabn_evaluate(model, data, n_adapt=n_adapt, n_eval=n_eval, **kw) for name, kw in shifts.items()}
