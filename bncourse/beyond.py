"""Experiments of chapter 8 ("Beyond BatchNorm"): the normalization family and where BN fails.

* :func:`make_norm` builds every layer of the family by name, so each experiment compares them by one string;
  :func:`renorm_schedule` is Batch Renormalization's warm-up scaled to a run's length;
* :func:`pooled_axes` / :func:`shared_statistics_mask` describe which entries of an (N, C, H, W) tensor share
  statistics under BN, LN, IN and GN (the "axis picture");
* :func:`small_batch_accuracy` trains one small MLP at a given batch size on a fixed number of images;
  :func:`values_per_statistic` counts the values one statistic pools over and :func:`batch_mean_noise`
  measures how noisy the batch mean is (BN's *effective* batch);
* :func:`token_norm` normalizes a padded batch of token sequences, :func:`neighbour_sensitivity` measures how
  much one sequence's output moves when only the other sequences of the batch change;
* :func:`residual_stream_variance` measures the variance of a residual stream block by block at
  initialization, :func:`residual_mlp` / :func:`train_residual` train the same stacks.

The recurrent experiment lives in :mod:`bncourse.recurrent`. Every ``seed`` argument here and there is shifted by
the environment variable ``BNCOURSE_SEED_OFFSET``, as :func:`bncourse.seeding.set_seed` is, so the chapter can be
re-run on seeds it was not tuned on (:func:`generator`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bncourse import torch as bt
from bncourse.seeding import set_seed, torch_generator
from bncourse.torch.renorm import linear_ramp, paper_schedule

__all__ = ["NORM_KINDS", "make_norm", "renorm_schedule", "RENORM_PAPER_STEPS", "pooled_axes",
           "shared_statistics_mask", "values_per_statistic", "batch_mean_noise", "small_batch_accuracy",
           "token_norm", "neighbour_sensitivity", "batch_mean_spread", "RESIDUAL_VARIANTS", "residual_mlp", "residual_stream_variance", "train_residual", "generator"]

#: Names accepted by :func:`make_norm`.
NORM_KINDS = ("none", "bn", "brn", "gn", "ln", "in", "rms")


#: A CPU generator seeded with ``seed`` shifted by ``BNCOURSE_SEED_OFFSET``: every draw of this chapter's
#: experiments moves with the offset (:func:`bncourse.seeding.torch_generator`).
generator = torch_generator


#: The paper's training length that :func:`renorm_schedule` maps onto a run: twice the step (40k) at which the
#: paper's ``r_max`` reaches 3, so that the relaxation ends at half the run.
RENORM_PAPER_STEPS = 80_000


def renorm_schedule(total_steps: int) -> dict[str, linear_ramp]:
    """Batch Renormalization's warm-up (Ioffe 2017, :func:`bncourse.torch.paper_schedule`) scaled to a
    run of ``total_steps`` steps: plain BN (r_max = 1, d_max = 0) for the first 1/16 of the steps, then d_max
    relaxed to 5 by 31 % and r_max to 3 by 50 % of the run. Returns ``{"r_max": ..., "d_max": ...}``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    return paper_schedule(scale=total_steps / RENORM_PAPER_STEPS)


def make_norm(kind: str, num_features: int, *, groups: int = 8, dims: int = 1,
              renorm_steps: int | None = None) -> nn.Module:
    """One normalization layer of the family, by name, from ``bncourse.torch``.

    Args:
        kind: ``"none"`` (identity), ``"bn"`` (BatchNorm), ``"brn"`` (Batch Renormalization: with the warm-up
            of :func:`renorm_schedule` when ``renorm_steps`` is given, otherwise with r_max = 1.5, d_max = 0.5
            from the first step), ``"gn"`` (GroupNorm with ``groups`` groups),
            ``"ln"`` (LayerNorm over all features; over (C, H, W) for ``dims=2``), ``"in"`` (InstanceNorm,
            ``dims=2`` only) or ``"rms"`` (RMSNorm over the last axis).
        num_features: C, the number of features (dims=1: input (N, C)) or channels (dims=2: (N, C, H, W)).
        groups: number of groups of ``"gn"``; must divide ``num_features``.
        dims: 1 for (N, C) inputs, 2 for (N, C, H, W).
        renorm_steps: for ``"brn"``, the length of the run its warm-up is scaled to.
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    if kind == "none":
        return nn.Identity()
    if kind == "bn":
        return bt.BatchNorm1d(num_features) if dims == 1 else bt.BatchNorm2d(num_features)
    if kind == "brn":
        layer = bt.BatchRenorm1d if dims == 1 else bt.BatchRenorm2d
        if renorm_steps is not None:
            return layer(num_features, **renorm_schedule(renorm_steps))
        return layer(num_features, r_max=1.5, d_max=0.5)   # the Group Normalization paper's fixed limits
    if kind == "gn":
        return bt.GroupNorm(groups, num_features)
    if kind == "ln":
        return bt.LayerNorm(num_features) if dims == 1 else bt.GroupNorm(1, num_features)
    if kind == "in":
        if dims != 2:
            raise ValueError("InstanceNorm needs spatial axes: use dims=2")
        return bt.InstanceNorm2d(num_features, affine=True)
    if kind == "rms":
        if dims != 1:
            raise ValueError("RMSNorm normalizes the last axis: use dims=1")
        return bt.RMSNorm(num_features)
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORM_KINDS}")


def pooled_axes(kind: str) -> tuple[int, ...]:
    """The axes of an (N, C, H, W) tensor that one statistic pools over.

    For ``"gn"`` the axes refer to the tensor reshaped to (N, G, C // G, H, W): GroupNorm is LayerNorm
    applied to each group of channels.
    """
    axes = {"bn": (0, 2, 3), "ln": (1, 2, 3), "in": (2, 3), "gn": (2, 3, 4)}
    if kind not in axes:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {tuple(axes)}")
    return axes[kind]


def shared_statistics_mask(kind: str, n: int, c: int, *, groups: int = 2, sample: int = 0,
                           channel: int = 0) -> np.ndarray:
    """Which (sample, channel) cells share their mean and variance with cell (``sample``, ``channel``).

    All four layers pool over every spatial position (H, W), so the picture of an (N, C, H, W) tensor
    reduces to its (N, C) plane. Returns a bool array of shape (n, c).
    """
    if kind == "gn" and c % groups:
        raise ValueError(f"num_channels ({c}) must be divisible by num_groups ({groups})")
    same_sample = np.arange(n)[:, None] == sample
    same_channel = np.arange(c)[None, :] == channel
    every = np.ones((n, c), dtype=bool)
    if kind == "bn":
        return every & same_channel
    if kind == "ln":
        return every & same_sample
    if kind == "in":
        return same_sample & same_channel
    if kind == "gn":
        size = c // groups
        return same_sample & (np.arange(c)[None, :] // size == channel // size)
    raise ValueError(f"unknown normalization {kind!r}; expected 'bn', 'ln', 'in' or 'gn'")


def values_per_statistic(kind: str, shape: Sequence[int], *, groups: int = 8) -> int:
    """How many values one mean/variance is computed from, for an input of ``shape`` (N, C) or (N, C, H, W).

    For BN this is its effective batch: N for dense features, N·H·W for convolutional channels.
    """
    n, c, *spatial = shape
    hw = math.prod(spatial)
    counts = {"bn": n * hw, "ln": c * hw, "in": hw, "gn": c // groups * hw}
    if kind not in counts:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {tuple(counts)}")
    return counts[kind]


# --------------------------------------------------------------------------------------------------
# Small batches
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def batch_mean_noise(features: Tensor, batch_size: int, *, draws: int = 500, seed: int = 0) -> float:
    """How noisy BN's batch mean is: the standard deviation, over ``draws`` random batches of ``batch_size``
    samples, of each channel's batch mean (pooled over N, or N·H·W), in units of the channel's population
    standard deviation over all of ``features``; averaged over channels.

    Args:
        features: a layer's outputs over a data set, (n, C) or (n, C, H, W).

    For independent values this is 1 / sqrt(values per statistic): 1 / sqrt(N) for dense features. For
    convolutional channels neighbouring positions are correlated, so the N·H·W values count for fewer.
    """
    if features.ndim < 2 or not 1 <= batch_size <= len(features):
        raise ValueError(f"need features (n, C, ...) and 1 <= batch_size <= n, got {tuple(features.shape)}, "
                         f"{batch_size}")
    gen = generator(seed)
    dims = (0,) + tuple(range(2, features.ndim))
    population_std = features.transpose(0, 1).reshape(features.shape[1], -1).std(dim=1)
    means = torch.stack([features[torch.randint(0, len(features), (batch_size,), generator=gen)].mean(dim=dims)
                         for _ in range(draws)])                                  # (draws, C)
    return (means.std(dim=0) / population_std).mean().item()


def small_batch_accuracy(kind: str, batch_size: int, x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, *,
                         n_images: int = 3000, width: int = 64, lr: float = 0.05, groups: int = 8,
                         renorm_warmup: bool = True, seed: int = 0) -> float:
    """Accuracy (eval mode) of a 784-width-width-10 ReLU MLP trained once over ``n_images`` images.

    Every batch size sees the same images (one pass, ``n_images // batch_size`` steps), with SGD, momentum 0.9
    and the learning rate scaled as ``lr * sqrt(batch_size / 32)``. The norm layer sits between each hidden
    Linear (no bias) and its ReLU.

    Args:
        kind: a name of :func:`make_norm` (dims=1); ``"brn"`` runs with the warm-up of :func:`renorm_schedule`
            scaled to the run's ``n_images // batch_size`` steps, or with fixed limits if not ``renorm_warmup``.
        x, y: training images (n, 784) float32 and labels (n,) int64; x_eval, y_eval: evaluation set.
    """
    if batch_size < 2 or batch_size > n_images:
        raise ValueError(f"batch_size must be in [2, n_images], got {batch_size}")
    from bncourse.models import mlp

    set_seed(seed)
    renorm_steps = n_images // batch_size if renorm_warmup else None
    model = mlp([x.shape[1], width, width, 10], norm=lambda w: make_norm(kind, w, groups=groups,
                                                                         renorm_steps=renorm_steps),
                bias=kind == "none")
    opt = torch.optim.SGD(model.parameters(), lr=lr * math.sqrt(batch_size / 32), momentum=0.9)
    order = torch.randperm(len(x), generator=generator(seed))[:n_images]
    model.train()
    for idx in order[: len(order) - len(order) % batch_size].view(-1, batch_size):
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x_eval).argmax(1) == y_eval).float().mean().item()


# --------------------------------------------------------------------------------------------------
# Padded token sequences (Transformers)
# --------------------------------------------------------------------------------------------------


def token_norm(layer: nn.Module, x: Tensor, lengths: Sequence[int], *, kind: str) -> Tensor:
    """Normalize a padded batch of token sequences (B, T, D) with ``layer``; padding positions come back 0.

    ``kind="token"``: ``layer`` acts on each token's D features (LayerNorm, RMSNorm), padding is irrelevant.
    ``kind="batch"``: ``layer`` is a BatchNorm1d in training mode that sees only the real tokens — the
    careful way, statistics over all non-padding tokens of the batch.
    ``kind="batch_padded"``: the naive way, BatchNorm1d over all B·T positions including the padding.
    """
    b, t, d = x.shape
    if len(lengths) != b or not all(0 < n <= t for n in lengths):
        raise ValueError(f"need {b} lengths in [1, {t}], got {list(lengths)}")
    mask = torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None]          # (B, T) real tokens
    x = x * mask[..., None]                                                        # padding = 0
    if kind == "token":
        out = layer(x)
    elif kind == "batch":
        out = torch.zeros_like(x)
        out[mask] = layer(x[mask])                                                 # (n_real, D) rows
    elif kind == "batch_padded":
        out = layer(x.reshape(b * t, d)).reshape(b, t, d)
    else:
        raise ValueError(f"kind must be 'token', 'batch' or 'batch_padded', got {kind!r}")
    return out * mask[..., None]


def neighbour_sensitivity(layer: nn.Module, kind: str, *, d: int = 16, t: int = 12, batch: int = 4,
                          trials: int = 8, seed: int = 0) -> float:
    """Largest change of sequence 0's normalized output when only the *other* sequences of the batch change.

    Sequence 0 (length ``t // 2``) stays fixed; in each of ``trials`` draws its neighbours get new random
    contents (scale drawn from [0.5, 2]) and new random lengths. Returns the max absolute difference of
    sequence 0's output to its output in the first draw (0.0 exactly for a per-token layer).
    """
    gen = generator(seed)
    own = torch.randn(1, t, d, generator=gen)
    outputs = []
    for _ in range(trials):
        others = torch.randn(batch - 1, t, d, generator=gen) * (0.5 + 1.5 * torch.rand(1, generator=gen))
        lengths = [t // 2] + torch.randint(1, t + 1, (batch - 1,), generator=gen).tolist()
        with torch.no_grad():
            outputs.append(token_norm(layer, torch.cat([own, others]), lengths, kind=kind)[0])
    return max((o - outputs[0]).abs().max().item() for o in outputs)


def batch_mean_spread(batch: int, length: int, rho: float, *, draws: int = 2000, seed: int = 0) -> float:
    """Standard deviation, over ``draws`` batches, of a feature's batch mean over ``batch`` sequences of
    ``length`` tokens, when tokens of one sequence share a component: x_bt = s_b + e_bt with Var(s_b) = rho,
    Var(e_bt) = 1 - rho (so every token has variance 1 and tokens of one sequence correlate by rho).

    Independent tokens would give 1 / sqrt(batch * length); the correlation makes it
    sqrt((1 + (length - 1) * rho) / (batch * length)): an effective batch of
    batch * length / (1 + (length - 1) * rho) tokens, about ``batch`` when rho * length >> 1.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    gen = generator(seed)
    shared = torch.randn(draws, batch, 1, generator=gen, dtype=torch.float64) * math.sqrt(rho)
    own = torch.randn(draws, batch, length, generator=gen, dtype=torch.float64) * math.sqrt(1.0 - rho)
    return (shared + own).mean(dim=(1, 2)).std().item()


# --------------------------------------------------------------------------------------------------
# Residual networks
# --------------------------------------------------------------------------------------------------

#: The residual MLP variants of :func:`residual_mlp`. "none" is x + W2 relu(W1 x); "bn" adds BN after each
#: Linear of the branch; "zero_gamma" is "bn" with the last BN of each branch starting at gamma = 0; "fixup" has
#: no norm, W2 = 0 and W1 scaled by L^(-1/2) (Zhang et al.'s rule for two-layer branches); "skipinit" has no norm
#: and a scalar alpha = 0 at the end of each branch.
RESIDUAL_VARIANTS = ("none", "bn", "zero_gamma", "fixup", "skipinit")


class _Block(nn.Module):
    """One residual block x + branch(x), branch = [BN] -> ReLU -> Linear -> [BN] -> ReLU -> Linear [-> BN]."""

    def __init__(self, width: int, variant: str, depth: int):
        super().__init__()
        use_bn = variant in ("bn", "zero_gamma")
        self.fc1, self.fc2 = nn.Linear(width, width, bias=not use_bn), nn.Linear(width, width, bias=not use_bn)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)
        self.norm1 = make_norm("bn" if use_bn else "none", width)
        self.norm2 = make_norm("bn" if use_bn else "none", width)
        self.alpha = nn.Parameter(torch.zeros(())) if variant == "skipinit" else None
        if variant == "zero_gamma":
            nn.init.zeros_(self.norm2.weight)
        if variant == "fixup":
            with torch.no_grad():
                self.fc1.weight.mul_(depth ** -0.5)
            nn.init.zeros_(self.fc2.weight)

    def forward(self, x: Tensor) -> Tensor:
        branch = self.norm2(self.fc2(torch.relu(self.norm1(self.fc1(torch.relu(x))))))
        return x + (branch if self.alpha is None else self.alpha * branch)


def residual_mlp(variant: str, *, depth: int = 20, width: int = 64, n_in: int = 784,
                 n_classes: int = 10) -> nn.Sequential:
    """``embed`` (Linear n_in -> width) -> ``depth`` residual blocks -> ReLU -> ``out`` Linear.

    Children: ``embed``, ``blocks`` (a Sequential of blocks), ``head`` (ReLU + Linear). Input (N, n_in).
    """
    if variant not in RESIDUAL_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {RESIDUAL_VARIANTS}")
    embed = nn.Linear(n_in, width)
    nn.init.kaiming_normal_(embed.weight, nonlinearity="linear")
    nn.init.zeros_(embed.bias)
    blocks = nn.Sequential(*[_Block(width, variant, depth) for _ in range(depth)])
    head = nn.Sequential(nn.ReLU(), nn.Linear(width, n_classes))
    return nn.Sequential(OrderedDict(embed=embed, blocks=blocks, head=head))


@torch.no_grad()
def residual_stream_variance(model: nn.Sequential, x: Tensor) -> np.ndarray:
    """Variance of the residual stream after the embedding and after each block, in train mode (batch
    statistics), relative to the variance after the embedding. Returns (depth + 1,) float64, entry 0 = 1."""
    model.train()
    h = model.embed(x)
    var = [h.var().item()]
    for block in model.blocks:
        h = block(h)
        var.append(h.var().item())
    return np.asarray(var) / var[0]


def train_residual(variant: str, x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, *, depth: int = 20,
                   width: int = 64, steps: int = 200, batch_size: int = 64, lr: float = 0.05,
                   seed: int = 0) -> float:
    """Test accuracy of :func:`residual_mlp` after ``steps`` SGD steps (momentum 0.9); NaN if the loss stops
    being finite."""
    set_seed(seed)
    model = residual_mlp(variant, depth=depth, width=width, n_in=x.shape[1])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = generator(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            return float("nan")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x_eval).argmax(1) == y_eval).float().mean().item()
