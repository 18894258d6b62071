"""Chapter 6's experiment: train deep MLPs with and without (noisy, l_p) normalization and measure them.

:func:`smoothness_run` trains one network of :data:`VARIANTS` with :func:`bncourse.training.train` and,
without changing the run, records after every optimizer step:

* a :class:`bncourse.landscape.LandscapeProbe` every ``every`` steps (line search: loss range, gradient
  predictiveness, effective beta-smoothness, gradient norm; optionally Definition 2.1's ICS per layer);
* with ``watch=``, an :class:`bncourse.recorders.ActivationRecorder` of the first units of some hidden
  layers' pre-activations on one fixed batch in training mode (for :func:`bncourse.landscape.activation_drift`).

The chapter's setting is Santurkar et al.'s (2018) at CPU scale: 10 Linear layers (9 hidden of width 128),
ReLU, Glorot initialization, SGD with lr 0.1, batch 128, 500 steps.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from bncourse.landscape import LandscapeProbe
from bncourse.models import hidden_preactivations, mlp
from bncourse.normalizers import ActivationNoise, LpNorm1d, NoisyBatchNorm1d
from bncourse.recorders import ActivationRecorder, first_units
from bncourse.history import History
from bncourse.training import set_seed, train

__all__ = ["SIZES", "VARIANTS", "SmoothnessRun", "smoothness_run", "final_loss", "ics_median"]

#: The chapter's network (784 inputs, 9 hidden layers of width 128, 10 classes; 10 Linear layers).
SIZES: tuple[int, ...] = (784,) + (128,) * 9 + (10,)

#: Variant name -> keyword arguments of :func:`bncourse.models.mlp`.
VARIANTS: dict[str, dict[str, Any]] = {
    "standard": dict(norm=None),
    "BN": dict(norm="bn"),
    "noisy BN": dict(norm=NoisyBatchNorm1d),
    "standard + noise": dict(norm=ActivationNoise, bias=True),  # the same noise, no BN
    "l1": dict(norm=functools.partial(LpNorm1d, p=1)),
    "l2": dict(norm=functools.partial(LpNorm1d, p=2)),
    "linf": dict(norm=functools.partial(LpNorm1d, p=float("inf"))),
}


class SmoothnessRun(NamedTuple):
    """One trained network's records (a named tuple ``(history, probe, trace)``): the training ``history``,
    the landscape ``probe`` and the activation ``trace`` (``trace.records["layer k"]``: one (batch, units)
    array per step; ``None`` without ``watch``)."""

    history: History
    probe: LandscapeProbe
    trace: ActivationRecorder | None

    def final_loss(self, last: int = 100) -> float:
        """:func:`final_loss` of the history."""
        return final_loss(self.history, last)


def smoothness_run(
    variant: str,
    x: torch.Tensor,
    y: torch.Tensor,
    eval_data: tuple[Any, Any],
    *,
    sizes: Sequence[int] = SIZES,
    lr: float = 0.1,
    batch_size: int = 128,
    steps: int = 500,
    seed: int = 0,
    every: int = 50,
    ics: bool = True,
    watch: Sequence[int] = (),
    units: int = 8,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> SmoothnessRun:
    """Train one network of :data:`VARIANTS` and measure it along the way.

    Args:
        variant: a key of :data:`VARIANTS`.
        x, y: training inputs (n, sizes[0]) float32 and labels (n,) int64, as tensors; the probe draws its
            batches from them too.
        eval_data: ``(x_test, y_test)``, evaluated once at the end (``history.final("test_acc")``).
        sizes: layer widths of the MLP (ReLU, Glorot initialization, seeded with ``seed``).
        lr, batch_size, steps, seed: SGD settings (seed: initialization, batch order, noise, probe batches).
        every: probe the landscape every this many steps (and at step 0).
        ics: also measure Definition 2.1's ICS at each probe.
        watch: hidden layers (1 = first) whose pre-activations are recorded at every step on the fixed
            batch ``x[:batch_size]`` (first ``units`` units, training mode, as ``"layer k"``).
        loss_fn: the training loss.

    Returns:
        A :class:`SmoothnessRun`; neither recorder changes the training run.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    set_seed(seed)
    model = mlp(list(sizes), activation="relu", init="glorot", **VARIANTS[variant])
    pre = hidden_preactivations(model)  # per hidden layer: the module whose output enters the ReLU
    for k in watch:
        if not 1 <= k <= len(pre):
            raise ValueError(f"watch layer {k} out of range: the network has {len(pre)} hidden layers")
    probe = LandscapeProbe(loss_fn, lr, x, y, batch_size=batch_size, every=every, ics=ics, seed=seed)
    trace = None
    if watch:
        trace = ActivationRecorder({f"layer {k}": pre[k - 1] for k in watch}, first_units(units),
                                   x=x[:batch_size], at=range(1, steps + 1), mode="current")
    probe(model, 0)  # the initial point
    history = train(model, (x, y), eval_data=eval_data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                    eval_every=steps, eval_subset=2000, progress=False, loss_fn=loss_fn,
                    step_callback=[probe] if trace is None else [probe, trace])
    return SmoothnessRun(history, probe, trace)


def final_loss(history: History, last: int = 100) -> float:
    """Mean mini-batch training loss (train mode) over the last ``last`` steps."""
    if not history.train_loss:
        raise ValueError("the history has no training steps")
    return float(np.mean(history.train_loss[-last:]))


def ics_median(probe: LandscapeProbe, layer: int) -> tuple[float, float, float]:
    """Medians over the probes after step 0 of one layer (1 = first Linear): ``(l2 ICS, cosine, ||G||)``."""
    if len(probe.ics_l2) < 2:
        raise ValueError("need ICS probes after step 0 (LandscapeProbe with ics=True, at least two probes)")
    l2, cos, gn = (np.stack(a)[1:, layer - 1] for a in (probe.ics_l2, probe.ics_cosine, probe.ics_grad_norm))
    return float(np.median(l2)), float(np.median(cos)), float(np.median(gn))
