"""A tanh RNN that reads an image row by row, with five ways to normalize its pre-activations.

``RowRNN(norm)`` computes, for t = 1 .. T with h_0 = 0 (``norm_t`` below is the normalization of step t),

    none, ln, bn_shared, bn_step:  a_t = W_x x_t + W_h h_{t-1},  h_t = tanh(norm_t(a_t))
    bn_rec:                        h_t = tanh(BN_t(W_x x_t; γ_x) + BN_t(W_h h_{t-1}; γ_h) + b)

and ``logits = W_out h_T + b_out``. The choices of ``norm``:

* ``"none"``; ``"ln"``: LayerNorm over the hidden units;
* ``"bn_shared"``: one BatchNorm1d for all time steps (its batch statistics pool over N·T values);
* ``"bn_step"``: a separate BatchNorm1d per time step, each with its own statistics *and* its own γ, β;
* ``"bn_rec"``: recurrent BN as Cooijmans et al. (2016) published it, adapted from their LSTM to this
  vanilla RNN (:class:`RecurrentBatchNorm`): statistics per time step, γ shared across time and initialized
  to 0.1, the input term W_x x_t and the recurrent term W_h h_{t-1} normalized separately (their β is 0, one
  shared bias b shifts the sum), and beyond the longest training sequence the statistics of its last step.

Both per-step models reuse their last step's statistics for a sequence longer than the ``steps`` they were
built for; :meth:`RowRNN.extend_steps` instead gives ``bn_step`` fresh per-step layers whose statistics
:func:`recompute_step_statistics` estimates from data. :func:`normalized_offset` measures how far the
statistics a model uses at each step are from the data it sees there.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from bncourse import torch as bt
from bncourse.beyond import generator, make_norm
from bncourse.seeding import set_seed

__all__ = ["RNN_NORMS", "RecurrentBatchNorm", "RowRNN", "as_rows", "train_row_rnn", "accuracy",
           "preactivation_stats", "normalized_offset", "recompute_step_statistics"]

#: Names accepted by :class:`RowRNN`.
RNN_NORMS = ("none", "ln", "bn_shared", "bn_step", "bn_rec")


def as_rows(x: Tensor, side: int = 28) -> Tensor:
    """Flat images (N, side*side) -> sequences of rows (N, side, side): step t is image row t."""
    return x.reshape(len(x), -1, side)


class RecurrentBatchNorm(nn.Module):
    """BatchNorm with statistics per time step and γ, β shared by all steps (Cooijmans et al. 2016).

    ``forward(x, t)`` normalizes ``x`` (N, C), the values of step ``t`` (0-based). In training mode it uses the
    batch statistics of ``x`` and moves ``running_mean[t]``, ``running_var[t]`` (each (steps, C)) towards them
    as ``BatchNorm1d`` does (``momentum``, unbiased variance). In eval mode it uses the running statistics of
    step ``min(t, steps - 1)``: beyond the longest training sequence, those of its last step.

    Args:
        num_features: C.
        steps: the longest training sequence, T_max; training on a longer one is an error.
        gamma_init: initial γ (0.1 in the paper, which keeps tanh and the sigmoid gates out of saturation).
        bias: whether the layer has its own β (initialized to 0); the paper's recurrent BN has none, the cell's
            bias shifts the sum of the normalized terms instead.
    """

    def __init__(self, num_features: int, steps: int, *, gamma_init: float = 0.1, bias: bool = False,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_features < 1 or steps < 1:
            raise ValueError(f"num_features and steps must be positive, got {num_features} and {steps}")
        self.num_features, self.steps, self.eps, self.momentum = num_features, steps, eps, momentum
        self.weight = nn.Parameter(torch.full((num_features,), float(gamma_init)))
        self.bias = nn.Parameter(torch.zeros(num_features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(steps, num_features))
        self.register_buffer("running_var", torch.ones(steps, num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, steps={self.steps}, eps={self.eps}, momentum={self.momentum}"

    def statistics_step(self, t: int) -> int:
        """The step whose running statistics step ``t`` uses in eval mode: ``min(t, steps - 1)``."""
        if t < 0:
            raise ValueError(f"time step must be >= 0, got {t}")
        return min(t, self.steps - 1)

    def normalize(self, x: Tensor, t: int) -> Tensor:
        """x̂ of step ``t`` (N, C), before γ and β: batch statistics in training, running ones in eval."""
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input (N, {self.num_features}), got shape {tuple(x.shape)}")
        if not self.training:
            s = self.statistics_step(t)
            return bt.standardize(x, (0,), self.eps, mean=self.running_mean[s], var=self.running_var[s])[0]
        if not 0 <= t < self.steps:
            raise ValueError(f"time step {t} in training, but statistics exist for steps 0..{self.steps - 1}: "
                             f"build the layer with steps >= the longest training sequence")
        if len(x) < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        x_hat, mean, var = bt.standardize(x, (0,), self.eps)
        with torch.no_grad():
            m = len(x)
            self.running_mean[t].lerp_(mean.reshape(-1), self.momentum)
            self.running_var[t].lerp_(var.reshape(-1) * (m / (m - 1)), self.momentum)
        return x_hat

    def forward(self, x: Tensor, t: int) -> Tensor:
        y = self.normalize(x, t) * self.weight
        return y if self.bias is None else y + self.bias


class RowRNN(nn.Module):
    """Input (N, T, n_in) -> logits (N, n_classes). See the module docstring for the five ``norm`` choices."""

    def __init__(self, norm: str, *, n_in: int = 28, hidden: int = 64, n_classes: int = 10, steps: int = 28):
        super().__init__()
        if norm not in RNN_NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {RNN_NORMS}")
        self.norm_kind = norm
        self.w_x = nn.Linear(n_in, hidden, bias=norm == "none")
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        nn.init.orthogonal_(self.w_h.weight)
        if norm == "bn_rec":      # [input term, recurrent term], one shared bias for their sum
            self.norms = nn.ModuleList([RecurrentBatchNorm(hidden, steps), RecurrentBatchNorm(hidden, steps)])
            self.bias = nn.Parameter(torch.zeros(hidden))
        else:
            kinds = {"none": "none", "ln": "ln", "bn_shared": "bn", "bn_step": "bn"}
            count = steps if norm == "bn_step" else 1
            self.norms = nn.ModuleList([make_norm(kinds[norm], hidden) for _ in range(count)])
            self.bias = None
        self.out = nn.Linear(hidden, n_classes)

    def norm_at(self, t: int) -> nn.Module:
        """The normalization layer of step t (0-based); past the last per-step layer, the last one."""
        if self.norm_kind == "bn_rec":
            raise ValueError("the 'bn_rec' model normalizes two terms per step: see model.norms")
        return self.norms[min(t, len(self.norms) - 1)]

    def extend_steps(self, steps: int) -> None:
        """Give a per-step model its own (fresh) layers for steps up to ``steps``, copies of the last one."""
        if self.norm_kind != "bn_step":
            raise ValueError("only the 'bn_step' model has per-step layers")
        while len(self.norms) < steps:
            self.norms.append(copy.deepcopy(self.norms[-1]))

    @torch.no_grad()
    def preactivations(self, x: Tensor) -> Tensor:
        """What is normalized at each step, in the model's current mode: a_t (N, T, hidden), or for ``bn_rec``
        the two terms [W_x x_t, W_h h_{t-1}] side by side (N, T, 2·hidden)."""
        return self._run(x, keep=True)[1]

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, keep=False)[0]

    def _run(self, x: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
        if x.ndim != 3:
            raise ValueError(f"expected input (N, T, n_in), got shape {tuple(x.shape)}")
        h = x.new_zeros(len(x), self.w_h.in_features)
        inputs = self.w_x(x)                                   # (N, T, hidden), all steps at once
        kept = []
        for t in range(x.shape[1]):
            if self.norm_kind == "bn_rec":
                recur = self.w_h(h)
                if keep:
                    kept.append(torch.cat([inputs[:, t], recur], 1))
                h = torch.tanh(self.norms[0](inputs[:, t], t) + self.norms[1](recur, t) + self.bias)
            else:
                a = inputs[:, t] + self.w_h(h)
                if keep:
                    kept.append(a)
                h = torch.tanh(self.norm_at(t)(a))
        return self.out(h), (torch.stack(kept, 1) if keep else None)


def train_row_rnn(norm: str, x: Tensor, y: Tensor, *, steps: int = 300, batch_size: int = 64, lr: float = 0.01,
                  hidden: int = 64, seed: int = 0) -> RowRNN:
    """Train a :class:`RowRNN` with Adam on sequences ``x`` (n, T, n_in), labels ``y``; returns it in eval mode.
    The per-step models get statistics for the T steps of ``x``."""
    set_seed(seed)
    model = RowRNN(norm, n_in=x.shape[2], hidden=hidden, steps=x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = generator(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Accuracy in eval mode."""
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def preactivation_stats(model: RowRNN, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-step batch mean and standard deviation of the pre-activations a_t over the samples of ``x``
    (the statistics a per-step BN would use), each (T, hidden) ((T, 2·hidden) for ``bn_rec``). The model runs
    in eval mode."""
    model.eval()
    a = model.preactivations(x)
    return a.mean(0), a.std(0, unbiased=False)


@torch.no_grad()
def normalized_offset(model: RowRNN, x: Tensor) -> Tensor:
    """How far the statistics a per-step model uses are from the data, step by step: the absolute value of the
    mean over the samples of x̂_t, averaged over the normalized units, (T,), in units of the statistics' std.
    x̂_t is the normalized pre-activation computed with the running statistics that step t uses in eval mode
    (for steps beyond the model's ``steps``, its last step's); for ``bn_rec`` both terms count. Near 0 where the statistics fit."""
    if model.norm_kind not in ("bn_step", "bn_rec"):
        raise ValueError("only the 'bn_step' and 'bn_rec' models have per-step statistics")
    a = model.preactivations(x)                                             # eval mode: (n, T, units)
    steps = range(x.shape[1])
    if model.norm_kind == "bn_step":
        mean = torch.stack([model.norm_at(t).running_mean for t in steps])
        std = torch.stack([(model.norm_at(t).running_var + model.norm_at(t).eps).sqrt() for t in steps])
    else:
        use = [model.norms[0].statistics_step(t) for t in steps]
        mean = torch.cat([layer.running_mean[use] for layer in model.norms], 1)
        std = torch.cat([(layer.running_var[use] + layer.eps).sqrt() for layer in model.norms], 1)
    return ((a - mean) / std).mean(0).abs().mean(1)


@torch.no_grad()
def recompute_step_statistics(model: RowRNN, x: Tensor, *, from_step: int = 0, batch_size: int = 500) -> None:
    """Estimate the running statistics of the per-step BNs of steps ``from_step`` .. T-1 from ``x`` (n, T, n_in)
    as PyTorch's ``momentum=None`` (cumulative) average of batch statistics, adding layers up to T steps.

    Steps before ``from_step`` keep their statistics and run in eval mode during the pass; the weights do not
    change. The model is left in eval mode.
    """
    if model.norm_kind != "bn_step":
        raise ValueError("only the 'bn_step' model has per-step statistics")
    if not 0 <= from_step < x.shape[1]:
        raise ValueError(f"from_step must be in [0, {x.shape[1]}), got {from_step}")
    model.extend_steps(x.shape[1])
    model.eval()
    for layer in list(model.norms)[from_step:]:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    model.eval()
