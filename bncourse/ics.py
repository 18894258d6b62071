"""Chapter 3 machinery: internal covariate shift seen directly, and the health of a training run.

* :func:`health_run` -- train chapter 3's sigmoid MLP (with or without BN) with a
  :class:`bncourse.health.HealthMonitor` attached: activation and gradient histograms, saturated
  fractions, update-to-data ratios;
* :func:`batch_feature_shift` -- send two batches through a (trained) network and measure how far apart
  the distributions of one layer's features are, unit by unit: the "input distribution of the next layer"
  that the internal-covariate-shift hypothesis is about, for two very different batches;
* :func:`class_batches` -- two batches of two different classes (very different inputs) and two random
  batches (the baseline), from a data bundle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bncourse.health import HealthMonitor
from bncourse.history import History
from bncourse.models import mlp
from bncourse.recorders import module_outputs
from bncourse.seeding import numpy_rng
from bncourse.training import set_seed, train

__all__ = ["HealthRun", "health_run", "FeatureShift", "batch_feature_shift", "class_batches"]


@dataclass
class HealthRun:
    """A trained ``model``, its ``history`` and the ``monitor`` that watched it."""

    model: nn.Sequential
    history: History
    monitor: HealthMonitor


def health_run(data, *, norm: str | None, init: float = 0.1, seed: int = 0, steps: int = 500,
               at: tuple[int, ...] = (1, 500), probe: int = 256, lr: float = 0.1, batch_size: int = 60,
               depth: int = 3, width: int = 100) -> HealthRun:
    """Train a ``depth``-hidden-layer sigmoid MLP (weights ``N(0, init^2)``) with SGD and watch its health.

    ``data`` is an image bundle (:func:`bncourse.data.load_images`); the probe batch is its first ``probe``
    training images. ``norm`` is ``None`` or ``"bn"`` (Linear -> BN -> sigmoid). The same seed gives both
    networks the same initial weights.
    """
    set_seed(seed)
    model = mlp([data.n_features] + [width] * depth + [data.n_classes], activation="sigmoid", norm=norm, init=init)
    x = torch.from_numpy(data.x_train[:probe])
    y = torch.from_numpy(data.y_train[:probe])
    monitor = HealthMonitor(model, x, y, at=at)
    history = train(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, eval_every=steps,
                    eval_subset=2000, step_callback=monitor)
    return HealthRun(model, history, monitor)


@dataclass(frozen=True)
class FeatureShift:
    """Per unit (all (units,)): the two batches' feature means and stds, and ``distance`` =
    ``|mean_a - mean_b| / sqrt((std_a^2 + std_b^2) / 2)`` (the standardized mean difference).
    ``mean_distance`` is its average over the units."""

    mean_a: np.ndarray
    mean_b: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    distance: np.ndarray

    @property
    def mean_distance(self) -> float:
        return float(self.distance.mean())


def batch_feature_shift(model: nn.Module, module: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, *,
                        mode: str = "train") -> FeatureShift:
    """How differently ``module``'s output features are distributed for batch ``x_a`` and batch ``x_b``.

    Each batch (N, ...) is sent through ``model`` on its own, in ``mode`` (``"train"``: BN layers use the
    batch's statistics, as during training; ``"eval"``: the running statistics), and ``module``'s output
    (N, units) is summarized per unit. The model is left as found.
    """
    feats = []
    for x in (x_a, x_b):
        if len(x) < 2:
            raise ValueError(f"each batch needs at least 2 examples, got {len(x)}")
        out = module_outputs(model, {"f": module}, x, mode=mode)["f"]
        feats.append(out.reshape(len(out), -1).double().numpy())
    (fa, fb) = feats
    ma, mb, sa, sb = fa.mean(0), fb.mean(0), fa.std(0), fb.std(0)
    pooled = np.sqrt((sa ** 2 + sb ** 2) / 2)
    distance = np.abs(ma - mb) / np.where(pooled > 0, pooled, 1.0)
    return FeatureShift(ma, mb, sa, sb, distance)


def class_batches(data, class_a: int, class_b: int, size: int = 256,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_a, x_b, x_r1, x_r2)``, each (size, features): ``size`` test images of ``class_a``, of ``class_b``,
    and two disjoint random batches of test images (any class). The draws follow ``BNCOURSE_SEED_OFFSET``
    (``bncourse.seeding.numpy_rng(seed)``)."""
    x, y = data.x_test, data.y_test
    rng = numpy_rng(seed)
    picks = []
    for k in (class_a, class_b):
        idx = np.flatnonzero(y == k)
        if len(idx) < size:
            raise ValueError(f"class {k} has {len(idx)} test images, fewer than the batch size {size}")
        picks.append(rng.choice(idx, size, replace=False))
    perm = rng.permutation(len(y))[: 2 * size]
    picks += [perm[:size], perm[size:]]
    return tuple(torch.from_numpy(x[p]) for p in picks)
