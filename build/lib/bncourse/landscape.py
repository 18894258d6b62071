"""Measurements of Santurkar et al. (2018), "How does batch normalization help optimization?".

Everything here measures a model *at one point of training* without changing it (parameters,
buffers such as BN running statistics, ``.grad`` and train/eval mode are left exactly as found):

* :func:`line_search` -- move along the current gradient with several step sizes
  ``eta = c * lr`` (the paper: ``c in [1/2, 4]``) and record the loss, the change of the gradient
  ("gradient predictiveness") and the *effective beta-smoothness*
  ``max_eta ||grad L(theta - eta g) - grad L(theta)|| / ||eta g||`` (Sec. 3.2, Fig. 4).
* :func:`internal_covariate_shift` -- Definition 2.1: for layer ``i``, the l2 difference and the
  cosine between ``G = grad_{W_i} L(theta_t)`` and ``G'``, the same gradient after every
  *preceding* layer has taken its SGD step (same batch).
* :class:`LandscapeProbe` -- a recorder that runs both at chosen training steps and stores the
  numbers (plus gradient norms, which must be reported beside every smoothness measure: the
  measures are not scale-invariant and a net that does not train looks "smooth").
* :func:`theorem41` -- the gradient-norm relation of Theorem 4.1 on one BN layer, autograd vs
  formula, with the printed ``1/sqrt(m)`` and the proof's ``1/m`` coefficient.

A model is any ``nn.Module`` and the loss is ``loss_fn(model(x), y)`` (a scalar).  Layers with
:class:`bncourse.normalizers.ActivationNoise` are measured with their noise frozen to one draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from bncourse.normalizers import frozen_noise

__all__ = [
    "LineSearch", "line_search", "ICS", "internal_covariate_shift", "default_layers",
    "LandscapeProbe", "ActivationTrace", "module_outputs", "activation_drift", "Theorem41", "theorem41",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------------------
# helpers: snapshot/restore and gradients
# --------------------------------------------------------------------------------------------------

def _trainable(model: nn.Module) -> List[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return params


class _Restore:
    """Context manager: snapshot of the parameters (unless ``params=False``), the buffers and the
    global torch RNG, restored on exit (so that a measurement changes neither the model nor the
    random draws of the training run)."""

    def __init__(self, model: nn.Module, params: bool = True) -> None:
        self.model = model
        self.params = params

    def __enter__(self) -> "_Restore":
        tensors = list(self.model.parameters()) if self.params else []
        self.saved = [(t, t.detach().clone()) for t in tensors + list(self.model.buffers())]
        self.rng = torch.get_rng_state()
        return self

    def __exit__(self, *exc) -> None:
        with torch.no_grad():
            for t, v in self.saved:
                t.copy_(v)
        torch.set_rng_state(self.rng)


def _loss_and_grads(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                    params: Sequence[Tensor]) -> Tuple[float, List[Tensor]]:
    loss = loss_fn(model(x), y)
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return float(loss.detach()), grads


def _norm(tensors: Sequence[Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def _check_lr(lr: float) -> float:
    lr = float(lr)
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    return lr


# --------------------------------------------------------------------------------------------------
# line search along the gradient
# --------------------------------------------------------------------------------------------------

@dataclass
class LineSearch:
    """Result of :func:`line_search` (``K`` step sizes).

    Attributes:
        step_sizes: ``(K,)`` the step lengths ``eta`` (multipliers times ``lr``).
        loss0: loss at the current point.
        losses: ``(K,)`` ``L(theta - eta g)``.
        grad_norm: ``||g||`` at the current point (all trainable parameters).
        grad_diffs: ``(K,)`` ``||grad L(theta - eta g) - g||``.
        distances: ``(K,)`` ``||eta g||``, the distance moved.
    """

    step_sizes: np.ndarray
    loss0: float
    losses: np.ndarray
    grad_norm: float
    grad_diffs: np.ndarray
    distances: np.ndarray

    @property
    def loss_range(self) -> float:
        """``max - min`` of the losses over the step sizes (Fig. 4a's shaded band)."""
        return float(self.losses.max() - self.losses.min())

    @property
    def grad_predictiveness(self) -> float:
        """``max_eta ||grad L(theta - eta g) - g||`` (Fig. 4b; smaller = more predictive)."""
        return float(self.grad_diffs.max())

    @property
    def beta_smoothness(self) -> float:
        """Effective beta-smoothness ``max_eta ||grad L(theta - eta g) - g|| / ||eta g||`` (Fig. 4c).

        NaN when the gradient is exactly zero (no direction to move in)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = self.grad_diffs / self.distances
        return float(np.max(ratio)) if self.grad_norm > 0 else float("nan")


def line_search(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, lr: float,
                multipliers: Sequence[float] = (0.5, 1.0, 2.0, 4.0)) -> LineSearch:
    """Probe the loss landscape along the current gradient (Santurkar et al., Sec. 3.2).

    With ``g = grad L(theta)`` on the batch ``(x, y)``, evaluates ``L`` and ``grad L`` at
    ``theta - eta g`` for ``eta = c * lr``, ``c in multipliers``.  The model is evaluated in its
    current mode (train mode = with batch statistics, the landscape the optimizer sees) and is
    restored exactly afterwards; activation noise is frozen to one draw for the whole probe.

    Args:
        model: the network; all parameters with ``requires_grad`` are moved.
        loss_fn: ``loss_fn(model(x), y) -> scalar``.
        x, y: one batch, e.g. ``(B, D)`` and ``(B,)``.
        lr: the training learning rate (step sizes are relative to it).
        multipliers: the ``c`` values, all > 0.

    Returns:
        A :class:`LineSearch`.
    """
    lr = _check_lr(lr)
    mult = np.asarray(list(multipliers), dtype=np.float64)
    if mult.ndim != 1 or mult.size == 0 or not np.all(mult > 0) or not np.all(np.isfinite(mult)):
        raise ValueError(f"multipliers must be a non-empty sequence of positive numbers, got {multipliers!r}")
    if lr == 0:
        raise ValueError("lr must be > 0 for a line search (the step sizes are multiples of it)")
    params = _trainable(model)
    etas = mult * lr
    losses, diffs, dists = [], [], []
    with frozen_noise(model), _Restore(model):
        loss0, g = _loss_and_grads(model, loss_fn, x, y, params)
        g = [t.detach().clone() for t in g]
        theta0 = [p.detach().clone() for p in params]
        gnorm = _norm(g)
        for eta in etas:
            with torch.no_grad():
                for p, p0, gi in zip(params, theta0, g):
                    p.copy_(p0 - eta * gi)
            loss, g_new = _loss_and_grads(model, loss_fn, x, y, params)
            losses.append(loss)
            diffs.append(_norm([a - b for a, b in zip(g_new, g)]))
            dists.append(eta * gnorm)
    return LineSearch(step_sizes=etas, loss0=loss0, losses=np.array(losses), grad_norm=gnorm,
                      grad_diffs=np.array(diffs), distances=np.array(dists))


# --------------------------------------------------------------------------------------------------
# internal covariate shift, Definition 2.1
# --------------------------------------------------------------------------------------------------

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def default_layers(model: nn.Module) -> List[nn.Module]:
    """The layers whose ICS is measured by default: every Linear/Conv module, in registration order."""
    layers = [m for m in model.modules() if isinstance(m, _LAYER_TYPES)]
    if not layers:
        raise ValueError("the model has no nn.Linear / nn.Conv layers; pass layers= explicitly")
    return layers


@dataclass
class ICS:
    """Result of :func:`internal_covariate_shift` for ``k`` layers.

    Attributes:
        l2: ``(k,)`` ``||G_i - G'_i||``.
        cosine: ``(k,)`` ``<G_i, G'_i> / (||G_i|| ||G'_i||)`` (NaN if a gradient is zero).
        grad_norm: ``(k,)`` ``||G_i||`` (report it beside ``l2``: ICS scales with the gradient).
    """

    l2: np.ndarray
    cosine: np.ndarray
    grad_norm: np.ndarray


def internal_covariate_shift(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, lr: float,
                             layers: Optional[Sequence[nn.Module]] = None) -> ICS:
    """Definition 2.1 of Santurkar et al. (2018), for plain SGD with learning rate ``lr``.

    ``G_i = grad_{W_i} L(W_1, ..., W_k; x, y)`` and
    ``G'_i = grad_{W_i} L(W_1 - lr*G_1, ..., W_{i-1} - lr*G_{i-1}, W_i, ..., W_k; x, y)``:
    only the layers *before* ``i`` have taken their step, on the same batch.  "Before" is the order
    of ``model.parameters()`` (registration order, = forward order for ``nn.Sequential`` MLPs):
    every trainable parameter registered before ``layers[i].weight`` (weights, biases and BN's
    gamma/beta) takes its SGD step.  The first layer therefore has ICS exactly 0.

    Args:
        model, loss_fn, x, y: as in :func:`line_search`.
        lr: the SGD learning rate of the step (``lr = 0`` gives ICS 0 everywhere).
        layers: modules with a ``.weight`` parameter; default :func:`default_layers`.

    Returns:
        An :class:`ICS` with one entry per layer.  The model is restored exactly.
    """
    lr = _check_lr(lr)
    params = _trainable(model)
    layers = default_layers(model) if layers is None else list(layers)
    index = {id(p): k for k, p in enumerate(params)}
    w_idx = []
    for layer in layers:
        w = getattr(layer, "weight", None)
        if not isinstance(w, Tensor) or id(w) not in index:
            raise ValueError(f"layer {layer!r} has no trainable .weight that belongs to the model")
        w_idx.append(index[id(w)])
    l2, cos, norms = [], [], []
    with frozen_noise(model), _Restore(model):
        _, g = _loss_and_grads(model, loss_fn, x, y, params)
        g = [t.detach().clone() for t in g]
        theta0 = [p.detach().clone() for p in params]
        for k in w_idx:
            G = g[k]
            if k == 0:
                G2 = G  # nothing precedes: G' is G by definition
            else:
                with torch.no_grad():
                    for j, p in enumerate(params):
                        p.copy_(theta0[j] - lr * g[j] if j < k else theta0[j])
                _, (G2,) = _loss_and_grads(model, loss_fn, x, y, [params[k]])
            n1, n2 = _norm([G]), _norm([G2])
            l2.append(_norm([G - G2]))
            dot = float((G.double() * G2.double()).sum())
            cos.append(dot / (n1 * n2) if n1 > 0 and n2 > 0 else float("nan"))
            norms.append(n1)
    return ICS(l2=np.array(l2), cosine=np.array(cos), grad_norm=np.array(norms))


# --------------------------------------------------------------------------------------------------
# recorder over training
# --------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class LandscapeProbe:
    """Measures the landscape (and optionally ICS) at regular points of training.

    Use it as ``train(..., step_callback=probe)`` (it is called as ``probe(model, step, xb, yb)``
    after the optimizer step ``step``) and call ``probe(model, 0)`` once before training for the
    initial point.  Every ``every`` steps it draws a fresh mini-batch of ``batch_size`` samples
    from ``(x, y)`` with its own generator (so the training run's batches and random draws are
    untouched) and records, on that batch:

    * :func:`line_search` -> ``loss``, ``loss_range`` (and ``loss_min``, ``loss_max``), ``grad_predictiveness``,
      ``beta_smoothness``, ``grad_norm`` (lists, one entry per probe, at ``steps``);
    * if ``ics``: :func:`internal_covariate_shift` -> ``ics_l2``, ``ics_cosine``, ``ics_grad_norm``
      (lists of ``(k,)`` arrays, one per probe).

    Attributes:
        loss_fn, lr, x, y, batch_size, every, multipliers, ics, seed: the settings.
    """

    loss_fn: LossFn
    lr: float
    x: Tensor = field(repr=False)
    y: Tensor = field(repr=False)
    batch_size: int = 128
    every: int = 100
    multipliers: Sequence[float] = (0.5, 1.0, 2.0, 4.0)
    ics: bool = True
    seed: int = 0
    steps: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    loss_range: List[float] = field(default_factory=list)
    loss_min: List[float] = field(default_factory=list)
    loss_max: List[float] = field(default_factory=list)
    grad_predictiveness: List[float] = field(default_factory=list)
    beta_smoothness: List[float] = field(default_factory=list)
    grad_norm: List[float] = field(default_factory=list)
    ics_l2: List[np.ndarray] = field(default_factory=list)
    ics_cosine: List[np.ndarray] = field(default_factory=list)
    ics_grad_norm: List[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        if not 2 <= self.batch_size <= len(self.x):
            raise ValueError(f"batch_size must be in [2, {len(self.x)}], got {self.batch_size}")
        self._gen = torch.Generator().manual_seed(int(self.seed))

    def __call__(self, model: nn.Module, step: int, xb: Optional[Tensor] = None,
                 yb: Optional[Tensor] = None) -> None:
        if step % self.every != 0:
            return
        idx = torch.randperm(len(self.x), generator=self._gen)[: self.batch_size]
        x, y = self.x[idx], self.y[idx]
        ls = line_search(model, self.loss_fn, x, y, self.lr, self.multipliers)
        self.steps.append(int(step))
        self.loss.append(ls.loss0)
        self.loss_range.append(ls.loss_range)
        self.loss_min.append(float(ls.losses.min()))
        self.loss_max.append(float(ls.losses.max()))
        self.grad_predictiveness.append(ls.grad_predictiveness)
        self.beta_smoothness.append(ls.beta_smoothness)
        self.grad_norm.append(ls.grad_norm)
        if self.ics:
            r = internal_covariate_shift(model, self.loss_fn, x, y, self.lr)
            self.ics_l2.append(r.l2)
            self.ics_cosine.append(r.cosine)
            self.ics_grad_norm.append(r.grad_norm)

    def summary(self) -> Dict[str, float]:
        """Medians over the probes (robust to the transient first probes)."""
        if not self.steps:
            raise ValueError("nothing recorded yet")
        out = {"loss_range": float(np.median(self.loss_range)),
               "grad_predictiveness": float(np.median(self.grad_predictiveness)),
               "beta_smoothness": float(np.nanmedian(self.beta_smoothness)),
               "grad_norm": float(np.median(self.grad_norm))}
        if self.ics_l2:
            l2, cos = np.stack(self.ics_l2), np.stack(self.ics_cosine)
            out.update({f"ics_l2_layer{i + 1}": float(np.median(l2[:, i])) for i in range(l2.shape[1])})
            out.update({f"ics_cos_layer{i + 1}": float(np.nanmedian(cos[:, i]))
                        for i in range(cos.shape[1])})
        return out


@torch.no_grad()
def module_outputs(model: nn.Module, modules: Dict[str, nn.Module], x: Tensor) -> Dict[str, np.ndarray]:
    """Forward outputs of the named ``modules`` on ``x`` in the model's *current* mode.

    Training mode includes activation noise (frozen to one draw); BN buffers and the global RNG are
    restored, so recording does not perturb training.  Returns name -> ``(N, C)`` array (outputs of
    more dimensions are flattened to ``(N, -1)``).
    """
    captured: Dict[str, Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
               for name, m in modules.items()]
    try:
        with frozen_noise(model), _Restore(model, params=False):  # a forward pass moves only buffers
            model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [name for name in modules if name not in captured]
    if missing:
        raise ValueError(f"modules {missing} did not run in the forward pass: are they part of the model?")
    return {name: captured[name].detach().reshape(len(x), -1).cpu().numpy().copy() for name in modules}


@dataclass(eq=False)
class ActivationTrace:
    """Records the training-mode outputs of some modules on one *fixed* batch at chosen steps.

    Use it as (part of) ``train``'s ``step_callback``: ``trace(model, step)`` records when
    ``step in steps``.  With a fixed batch, the change between consecutive records is the change
    of the network, not of the data; the per-step noise of noisy BN is included (a fresh draw per
    record, as in training).  Recording does not perturb training (see :func:`module_outputs`).

    Attributes:
        modules: name -> module; x: the fixed batch ``(N, ...)``; steps: when to record;
        units: how many units (the first ones) to keep.
        recorded_steps: the steps recorded; records: name -> list of ``(N, units)`` arrays.
    """

    modules: Dict[str, nn.Module] = field(repr=False)
    x: Tensor = field(repr=False)
    steps: Sequence[int] = field(repr=False)
    units: int = 16
    recorded_steps: List[int] = field(default_factory=list)
    records: Dict[str, List[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.modules:
            raise ValueError("modules is empty")
        if self.units < 1:
            raise ValueError(f"units must be >= 1, got {self.units}")
        self._steps = set(int(s) for s in self.steps)
        self.records = {name: [] for name in self.modules}

    def __call__(self, model: nn.Module, step: int, xb: Optional[Tensor] = None,
                 yb: Optional[Tensor] = None) -> None:
        if step not in self._steps:
            return
        for name, out in module_outputs(model, self.modules, self.x).items():
            self.records[name].append(out[:, : self.units].copy())
        self.recorded_steps.append(int(step))


def activation_drift(records: Sequence[np.ndarray]) -> float:
    """How much a layer's per-unit distribution moves between consecutive records.

    ``records`` is a sequence of ``(N, U)`` arrays (``N`` samples of ``U`` units, e.g.
    ``LandscapeProbe.activations[name]``).  For each unit and each pair of consecutive records the
    change of the batch mean is divided by the unit's pooled within-batch standard deviation; the
    result is the mean of ``|change| / std`` over units and pairs (0 = perfectly stable; for
    records at consecutive steps, the noisy-BN offsets ``mu ~ U(-1/2, 1/2)`` alone give about
    ``E|mu - mu'| / 1.14 = (1/3) / 1.14 ~ 0.29``).
    """
    arrs = [np.asarray(r, dtype=np.float64) for r in records]
    if len(arrs) < 2:
        raise ValueError(f"need at least 2 records, got {len(arrs)}")
    shapes = {a.shape[1:] for a in arrs}
    if any(a.ndim != 2 for a in arrs) or len(shapes) != 1:
        raise ValueError(f"records must be (N, U) arrays with the same U, got shapes {[a.shape for a in arrs]}")
    means = np.stack([a.mean(0) for a in arrs])              # (R, U)
    stds = np.sqrt(np.mean([a.var(0) for a in arrs], axis=0))  # (U,)
    if np.any(stds == 0):
        raise ValueError("a unit is constant over every record (std 0); its drift is undefined")
    return float(np.mean(np.abs(np.diff(means, axis=0)) / stds))


# --------------------------------------------------------------------------------------------------
# Theorem 4.1
# --------------------------------------------------------------------------------------------------

@dataclass
class Theorem41:
    """Per-unit terms of Theorem 4.1 (``n`` units, batch size ``m``), from :func:`theorem41`.

    Attributes:
        lhs: ``(n,)`` ``||dL/dy_j||^2`` by autograd through the BN layer.
        rhs: ``(n,)`` ``(gamma_j^2/sigma_j^2)(||g_j||^2 - <1,g_j>^2/m - <g_j, yhat_j>^2/m)`` (the proof).
        rhs_sqrt_m: ``(n,)`` the same with the last coefficient ``1/sqrt(m)``, as printed.
        grad_sq: ``(n,)`` ``||g_j||^2`` with ``g_j = dL/dz_j``, the gradient of the layer above.
        m: the batch size.
    """

    lhs: np.ndarray
    rhs: np.ndarray
    rhs_sqrt_m: np.ndarray
    grad_sq: np.ndarray
    m: int


def theorem41(y: Tensor, gamma: Tensor, beta: Tensor, head: Callable[[Tensor], Tensor]) -> Theorem41:
    """Check Theorem 4.1 of Santurkar et al. on one BN layer: autograd vs the closed form.

    ``y`` (``(m, n)``: a batch of pre-activations, e.g. ``x @ W.T``) is standardized per unit with
    the batch mean and the biased batch std ``sigma_j`` (no eps, so that ``||yhat_j||^2 = m``
    exactly), ``z = gamma * yhat + beta`` and ``L = head(z)`` (any scalar function, e.g. the rest
    of a network and its loss).  With ``g_j = dL/dz_j`` (the role of ``grad_{y_j} L`` of the
    un-normalized network), the theorem's bound is an identity::

        ||dL/dy_j||^2 = (gamma_j^2 / sigma_j^2) (||g_j||^2 - <1, g_j>^2/m - <g_j, yhat_j>^2/m)

    since ``dL/dy_j`` is ``gamma_j/sigma_j`` times the orthogonal projection of ``g_j`` off
    ``span(1, yhat_j)``.  The arXiv text prints ``1/sqrt(m)`` for the last coefficient;
    ``rhs_sqrt_m`` holds that version.  Use float64 inputs for a tight comparison.

    Returns:
        A :class:`Theorem41` with per-unit arrays.
    """
    if y.dim() != 2:
        raise ValueError(f"y must be 2D (m, n), got shape {tuple(y.shape)}")
    m, n = y.shape
    if m < 2:
        raise ValueError(f"need a batch of m >= 2 samples, got m = {m}")
    if gamma.shape != (n,) or beta.shape != (n,):
        raise ValueError(f"gamma and beta must have shape ({n},), got {tuple(gamma.shape)} and "
                         f"{tuple(beta.shape)}")
    y = y.detach().clone().requires_grad_(True)
    mu = y.mean(0)
    sigma = (y - mu).pow(2).mean(0).sqrt()
    if bool((sigma == 0).any()):
        raise ValueError("a unit has zero batch variance; Theorem 4.1 needs sigma_j > 0")
    yhat = (y - mu) / sigma
    z = gamma * yhat + beta
    loss = head(z)
    if loss.dim() != 0:
        raise ValueError(f"head must return a scalar, got shape {tuple(loss.shape)}")
    dy, g = torch.autograd.grad(loss, [y, z])
    yh = yhat.detach()
    g_sq = g.pow(2).sum(0)
    s1 = g.sum(0).pow(2)
    s2 = (g * yh).sum(0).pow(2)
    scale = (gamma.detach() / sigma.detach()).pow(2)
    lhs = dy.pow(2).sum(0)
    rhs = scale * (g_sq - s1 / m - s2 / m)
    rhs_sqrt = scale * (g_sq - s1 / m - s2 / math.sqrt(m))
    as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    return Theorem41(lhs=as_np(lhs), rhs=as_np(rhs), rhs_sqrt_m=as_np(rhs_sqrt),
                     grad_sq=as_np(g_sq), m=int(m))
