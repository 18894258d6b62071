"""A network-health monitor: per-layer activations, their gradients, saturation and update sizes.

:class:`HealthMonitor` is a step callback of :func:`bncourse.training.train`
(``train(..., step_callback=monitor)``) built on module hooks:

* at the steps in ``at`` it sends a fixed probe batch through the network in training mode with a
  **forward hook** on every watched activation module (its output) and a **full backward hook** (the
  gradient of the loss with respect to that output), and stores both, flattened, for histograms;
  from the outputs it computes the **saturated fraction** (:func:`saturated_fraction`);
* after **every** optimizer step it stores the **update-to-data ratio** ``||W_t - W_{t-1}|| / ||W_{t-1}||``
  of every watched weight (the actual update, whatever the optimizer), keeping a copy of the weights
  from the previous call.

The probe pass runs inside :func:`bncourse.state.preserved` and computes gradients with
``torch.autograd.grad``, so it leaves parameters, ``.grad``, BN buffers, modes and the RNG as they were.
Figures: :func:`bncourse.plotting.plot_health`.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from bncourse.state import as_model_input, preserved

__all__ = ["SATURATION", "saturated_fraction", "HealthMonitor", "activation_modules"]

#: Saturation thresholds on an activation's *output*: a tanh unit with ``|tanh| > 0.97`` (its slope is below
#: 6 % of the maximum), the same band for the sigmoid ``sigma(z) = (1 + tanh(z / 2)) / 2``, i.e. an output
#: within 0.015 of 0 or 1; a ReLU unit is counted when it outputs exactly 0 (no gradient passes).
SATURATION = {"Tanh": 0.97, "Sigmoid": 0.015, "ReLU": 0.0}


def saturated_fraction(activation: nn.Module, output: torch.Tensor) -> float:
    """Fraction of the entries of ``output`` (any shape) of ``activation`` that are saturated (:data:`SATURATION`)."""
    kind = type(activation).__name__
    if kind not in SATURATION:
        raise ValueError(f"no saturation rule for {kind}; known: {sorted(SATURATION)}")
    out = output.detach()
    if kind == "Tanh":
        sat = out.abs() > SATURATION["Tanh"]
    elif kind == "Sigmoid":
        eps = SATURATION["Sigmoid"]
        sat = (out < eps) | (out > 1 - eps)
    else:
        sat = out <= 0
    return float(sat.double().mean())


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The activation module of every hidden block of a :func:`bncourse.models.mlp` / ``small_cnn``: name -> module."""
    from bncourse.models import hidden_blocks

    return {f"layer {i}": block.act for i, block in enumerate(hidden_blocks(model), start=1)}


class HealthMonitor:
    """Activations, gradients, saturation (at ``at``) and update-to-data ratios (every step) of a training run.

    Args:
        model: the network, before training starts (the weights' copy for the first update ratio is taken here).
        x, y: the probe batch (N, ...) and its labels (N,), sent through the network at the steps in ``at``.
        at: the steps at which to record activations and gradients (0 = call :meth:`record` yourself before
            training, e.g. ``monitor.record(model, 0)``).
        activations: name -> activation module to watch; default :func:`activation_modules` of ``model``.
        weights: name -> parameter whose update ratio to track; default the weight of each block's Linear
            (or Conv), named like the activations.
        loss_fn: the loss of the probe pass (default cross-entropy).

    Attributes:
        steps: recorded steps; ``activations[name]`` / ``gradients[name]``: lists (one per recorded step) of
        flattened float64 arrays; ``saturation[name]``: list of fractions; ``update_steps``: the steps of the
        update ratios; ``update_ratio[name]``: list of ratios, one per optimizer step.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, at: Iterable[int] = (),
                 activations: Mapping[str, nn.Module] | None = None,
                 weights: Mapping[str, torch.Tensor] | None = None,
                 loss_fn: nn.Module | None = None):
        from bncourse.models import hidden_linears

        if len(x) != len(y):
            raise ValueError(f"probe x has {len(x)} examples but y has {len(y)}")
        self.x, self.y = x, y
        self.at = {int(s) for s in at}
        self.acts = dict(activations) if activations is not None else activation_modules(model)
        if not self.acts:
            raise ValueError("no activation modules to watch")
        if weights is None:
            weights = {name: lin.weight for name, lin in zip(self.acts, hidden_linears(model))}
        self.weights = dict(weights)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.steps: list[int] = []
        self.activations: dict[str, list[np.ndarray]] = {n: [] for n in self.acts}
        self.gradients: dict[str, list[np.ndarray]] = {n: [] for n in self.acts}
        self.saturation: dict[str, list[float]] = {n: [] for n in self.acts}
        self.update_steps: list[int] = []
        self.update_ratio: dict[str, list[float]] = {n: [] for n in self.weights}
        self._previous = {n: w.detach().clone() for n, w in self.weights.items()}

    def record(self, model: nn.Module, step: int) -> None:
        """One probe pass in training mode: store activations, their gradients and the saturated fractions."""
        outs: dict[str, torch.Tensor] = {}
        grads: dict[str, torch.Tensor] = {}
        handles = []
        for name, m in self.acts.items():
            handles.append(m.register_forward_hook(lambda _m, _i, out, name=name: outs.__setitem__(name, out)))
            handles.append(m.register_full_backward_hook(
                lambda _m, _gi, gout, name=name: grads.__setitem__(name, gout[0])))
        try:
            with preserved(model):
                model.train()
                with torch.enable_grad():
                    loss = self.loss_fn(model(as_model_input(self.x, model)), self.y)
                    params = [p for p in model.parameters() if p.requires_grad]
                    torch.autograd.grad(loss, params)  # fires the backward hooks; .grad stays untouched
        finally:
            for h in handles:
                h.remove()
        self.steps.append(int(step))
        for name, m in self.acts.items():
            self.activations[name].append(outs[name].detach().double().reshape(-1).numpy())
            self.gradients[name].append(grads[name].detach().double().reshape(-1).numpy())
            self.saturation[name].append(saturated_fraction(m, outs[name]))

    def __call__(self, model: nn.Module, step: int, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> None:
        self.update_steps.append(int(step))
        for name, w in self.weights.items():
            now = w.detach()
            before = self._previous[name]
            self.update_ratio[name].append(float((now - before).norm() / before.norm()))
            before.copy_(now)
        if int(step) in self.at:
            self.record(model, step)

    def ratios(self) -> np.ndarray:
        """Update-to-data ratios as an array (n_layers, n_steps), rows in the order of ``weights``."""
        return np.array([self.update_ratio[n] for n in self.weights])
