"""A tanh RNN that reads an image row by row, with four ways to normalize its pre-activations.

``RowRNN(norm)`` computes, for t = 1 .. T with h_0 = 0,

    a_t = W_x x_t + W_h h_{t-1},    h_t = tanh(norm_t(a_t)),    logits = W_out h_T + b

where ``norm`` is ``"none"``, ``"ln"`` (LayerNorm over the hidden units), ``"bn_shared"`` (one BatchNorm1d
for all time steps: its batch statistics pool over N·T values) or ``"bn_step"`` (recurrent BN as in
Cooijmans et al. 2016: a separate BatchNorm1d, with its own statistics, per time step). A sequence longer
than the ``steps`` the per-step model was built for reuses the statistics of the last step, Cooijmans et
al.'s rule; :meth:`RowRNN.extend_steps` instead adds fresh per-step layers whose statistics
:func:`recompute_step_statistics` estimates from data.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from bncourse.beyond import generator, make_norm
from bncourse.training import set_seed

__all__ = ["RNN_NORMS", "RowRNN", "as_rows", "train_row_rnn", "accuracy", "preactivation_stats",
           "recompute_step_statistics"]

#: Names accepted by :class:`RowRNN`.
RNN_NORMS = ("none", "ln", "bn_shared", "bn_step")


def as_rows(x: Tensor, side: int = 28) -> Tensor:
    """Flat images (N, side*side) -> sequences of rows (N, side, side): step t is image row t."""
    return x.reshape(len(x), -1, side)


class RowRNN(nn.Module):
    """Input (N, T, n_in) -> logits (N, n_classes). See the module docstring for the four ``norm`` choices."""

    def __init__(self, norm: str, *, n_in: int = 28, hidden: int = 64, n_classes: int = 10, steps: int = 28):
        super().__init__()
        if norm not in RNN_NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {RNN_NORMS}")
        self.norm_kind = norm
        self.w_x = nn.Linear(n_in, hidden, bias=norm == "none")
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        nn.init.orthogonal_(self.w_h.weight)
        kinds = {"none": "none", "ln": "ln", "bn_shared": "bn", "bn_step": "bn"}
        count = steps if norm == "bn_step" else 1
        self.norms = nn.ModuleList([make_norm(kinds[norm], hidden) for _ in range(count)])
        self.out = nn.Linear(hidden, n_classes)

    def norm_at(self, t: int) -> nn.Module:
        """The normalization layer of step t (0-based); past the last per-step layer, the last one."""
        return self.norms[min(t, len(self.norms) - 1)]

    def extend_steps(self, steps: int) -> None:
        """Give a per-step model its own (fresh) layers for steps up to ``steps``, copies of the last one."""
        if self.norm_kind != "bn_step":
            raise ValueError("only the 'bn_step' model has per-step layers")
        while len(self.norms) < steps:
            self.norms.append(copy.deepcopy(self.norms[-1]))

    @torch.no_grad()
    def preactivations(self, x: Tensor) -> Tensor:
        """The normalized layers' inputs a_t for all steps, (N, T, hidden), in the model's current mode."""
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
            a = inputs[:, t] + self.w_h(h)
            if keep:
                kept.append(a)
            h = torch.tanh(self.norm_at(t)(a))
        return self.out(h), (torch.stack(kept, 1) if keep else None)


def train_row_rnn(norm: str, x: Tensor, y: Tensor, *, steps: int = 300, batch_size: int = 64, lr: float = 0.01,
                  hidden: int = 64, seed: int = 0) -> RowRNN:
    """Train a :class:`RowRNN` with Adam on sequences ``x`` (n, T, n_in), labels ``y``; returns it in eval mode."""
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
    (the statistics a per-step BN would use), each (T, hidden). The model runs in eval mode."""
    model.eval()
    a = model.preactivations(x)
    return a.mean(0), a.std(0, unbiased=False)


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
