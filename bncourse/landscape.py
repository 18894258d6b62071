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
* :func:`layer_gradient_norms` -- ``||dL/dW_l||`` of every layer on one batch;
  :func:`gradient_norms_at_init` -- the same for a fresh MLP (chapter 3's vanishing and exploding
  gradients at initialization).
* :func:`gradient_ratio_vs_depth`, :func:`growth_per_layer` -- first-to-last gradient ratio of fresh MLPs
  against depth: BN networks without skip connections explode geometrically (Yang et al., 2019).
* :func:`activation_drift` -- how far a layer's per-unit distribution moves between records.
* :func:`theorem41` -- the gradient-norm relation of Theorem 4.1 on one BN layer, autograd vs
  formula, with the printed ``1/sqrt(m)`` and the proof's ``1/m`` coefficient.

A model is any ``nn.Module`` and the loss is ``loss_fn(model(x), y)`` (a scalar).  Layers with
:class:`bncourse.normalizers.ActivationNoise` are measured with their noise frozen to one draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bncourse.normalizers import frozen_noise
from bncourse.seeding import torch_generator
from bncourse.state import preserved

__all__ = [
    "LineSearch", "line_search", "ICS", "internal_covariate_shift", "default_layers",
    "LandscapeProbe", "activation_drift", "layer_gradient_norms", "gradient_norms_at_init", "Theorem41", "theorem41",
    "YANG_RELU_GROWTH", "gradient_ratio_vs_depth", "growth_per_layer",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------------------
# helpers: gradients (the model is left as found by bncourse.state.preserved)
# --------------------------------------------------------------------------------------------------

def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return params


def _loss_and_grads(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                    params: Sequence[Tensor]) -> tuple[float, list[Tensor]]:
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
    with frozen_noise(model), preserved(model):
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


def default_layers(model: nn.Module) -> list[nn.Module]:
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
                             layers: Sequence[nn.Module] | None = None) -> ICS:
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
    with frozen_noise(model), preserved(model):
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


def layer_gradient_norms(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                         layers: Sequence[nn.Module] | None = None) -> np.ndarray:
    """``||dL/dW_l||`` (Frobenius norm of the weight gradient) of each layer, for one batch.

    The loss is ``loss_fn(model(x), y)`` in the model's current mode. Gradients are taken with
    ``torch.autograd.grad``, so ``.grad``, parameters, buffers and the RNG are left as found.

    Args:
        model, loss_fn, x, y: as in :func:`line_search`.
        layers: modules with a ``.weight`` parameter, e.g. ``bncourse.models.hidden_linears(model)``;
            default :func:`default_layers` (every Linear/Conv, the output layer included).

    Returns:
        ``(len(layers),)`` float64 array, in the order of ``layers`` (for an MLP: 1 = next to the input).
    """
    layers = default_layers(model) if layers is None else list(layers)
    weights = []
    for layer in layers:
        w = getattr(layer, "weight", None)
        if not isinstance(w, Tensor) or not w.requires_grad:
            raise ValueError(f"layer {layer!r} has no trainable .weight")
        weights.append(w)
    with preserved(model, params=False):
        _, grads = _loss_and_grads(model, loss_fn, x, y, weights)
    return np.array([_norm([g]) for g in grads])


def gradient_norms_at_init(sizes: Sequence[int], x: Tensor, y: Tensor, *, seed: int = 0,
                           loss_fn: LossFn = F.cross_entropy, **mlp_kwargs) -> np.ndarray:
    """Chapter 3's measurement: :func:`layer_gradient_norms` of the hidden layers of a freshly initialized
    ``bncourse.models.mlp(sizes, **mlp_kwargs)`` (seeded with ``seed``) on one batch ``(x, y)``.

    Returns ``(len(sizes) - 2,)``: ``||dL/dW_l||`` for hidden layer ``l = 1`` (next to the input) onwards.
    The ratio first / last shows vanishing (<< 1) or exploding (>> 1) gradients at initialization.
    """
    from bncourse.models import hidden_linears, mlp
    from bncourse.training import set_seed

    set_seed(seed)
    model = mlp(sizes, **mlp_kwargs)
    return layer_gradient_norms(model, loss_fn, x, y, hidden_linears(model))


# --------------------------------------------------------------------------------------------------
# recorder over training
# --------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class LandscapeProbe:
    """Measures the landscape (and optionally ICS) at regular points of training.

    Use it as ``train(..., step_callback=probe)`` (it is called as ``probe(model, step, xb, yb)``
    after the optimizer step ``step``) and call ``probe(model, 0)`` once before training for the
    initial point.  Every ``every`` steps it draws a fresh mini-batch of ``batch_size`` samples
    from ``(x, y)`` with its own generator, seeded with ``bncourse.seeding.shifted(seed)`` (so the
    training run's batches and random draws are untouched, and ``BNCOURSE_SEED_OFFSET`` moves it
    with them), and records, on that batch:

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
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_range: list[float] = field(default_factory=list)
    loss_min: list[float] = field(default_factory=list)
    loss_max: list[float] = field(default_factory=list)
    grad_predictiveness: list[float] = field(default_factory=list)
    beta_smoothness: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    ics_l2: list[np.ndarray] = field(default_factory=list)
    ics_cosine: list[np.ndarray] = field(default_factory=list)
    ics_grad_norm: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        if not 2 <= self.batch_size <= len(self.x):
            raise ValueError(f"batch_size must be in [2, {len(self.x)}], got {self.batch_size}")
        # the probe's batches follow BNCOURSE_SEED_OFFSET like the training run's
        self._gen = torch_generator(int(self.seed))

    def __call__(self, model: nn.Module, step: int, xb: Tensor | None = None,
                 yb: Tensor | None = None) -> None:
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

    def summary(self) -> dict[str, float]:
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


def activation_drift(records: Sequence[np.ndarray]) -> float:
    """How much a layer's per-unit distribution moves between consecutive records.

    ``records`` is a sequence of ``(N, U)`` arrays (``N`` samples of ``U`` units), e.g. the
    ``records[name]`` of a :class:`bncourse.recorders.ActivationRecorder` with a fixed batch and
    ``reduce=first_units(U)``.  For each unit and each pair of consecutive records the
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


# --------------------------------------------------------------------------------------------------
# gradient explosion with depth at initialization (Yang et al., 2019)
# --------------------------------------------------------------------------------------------------

#: Yang et al.'s mean-field growth factor of the gradient norm per BN-ReLU layer at initialization
#: (large batch): the squared norm grows by ``pi / (pi - 1)`` per layer, the norm by its square root.
YANG_RELU_GROWTH = math.sqrt(math.pi / (math.pi - 1))


def gradient_ratio_vs_depth(depths: Sequence[int], x: Tensor, y: Tensor, *, width: int = 128, seed: int = 0,
                            **mlp_kwargs) -> np.ndarray:
    """How much larger the first hidden layer's weight gradient is than the last one's, at initialization,
    for MLPs of several depths.

    For each ``depth`` in ``depths`` builds ``bncourse.models.mlp([D, width, ..., width, K], **mlp_kwargs)``
    with ``depth`` hidden layers (seeded with ``seed``), and takes :func:`gradient_norms_at_init` on the batch
    ``(x, y)``: ``x`` is ``(B, D)``, ``y`` is ``(B,)`` with labels below ``K = int(y.max()) + 1``.

    Returns:
        ``(len(depths),)`` float64: ``||dL/dW_1|| / ||dL/dW_depth||``. Near 1 at every depth for a network
        whose gradients neither vanish nor explode; growing geometrically with depth for one whose
        gradients explode towards the input.
    """
    depths = [int(d) for d in depths]
    if not depths or any(d < 2 for d in depths):
        raise ValueError(f"depths must list hidden-layer counts >= 2, got {depths}")
    if x.dim() != 2 or y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"need x of shape (B, D) and y of shape (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
    classes = int(y.max()) + 1
    ratios = []
    for depth in depths:
        norms = gradient_norms_at_init([x.shape[1]] + [width] * depth + [classes], x, y, seed=seed, **mlp_kwargs)
        ratios.append(norms[0] / norms[-1])
    return np.array(ratios, dtype=np.float64)


def growth_per_layer(depths: Sequence[int], ratios: Sequence[float]) -> float:
    """The factor by which ``ratios`` grow per added layer: ``exp`` of the least-squares slope of
    ``log(ratios)`` against ``depths`` (both ``(n,)``, ``n >= 2``). 1 means no growth with depth."""
    d = np.asarray(depths, dtype=np.float64)
    r = np.asarray(ratios, dtype=np.float64)
    if d.shape != r.shape or d.ndim != 1 or d.size < 2 or np.ptp(d) == 0:
        raise ValueError(f"need two (n,) arrays with n >= 2 distinct depths, got {d.shape} and {r.shape}")
    if not np.all(r > 0):
        raise ValueError("ratios must be positive")
    return float(np.exp(np.polyfit(d, np.log(r), 1)[0]))
