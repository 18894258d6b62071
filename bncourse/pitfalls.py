"""Small detectors for the classic BatchNorm bugs (the "bug clinic" of chapter 7).

Each detector *finds* one bug in a model or a pipeline and leaves the model exactly as it was
(parameters, running statistics, ``num_batches_tracked``, train/eval flags and the global RNG are
restored by :func:`bncourse.state.preserved`):

* :func:`bias_before_bn` — a Linear/Conv bias feeding straight into a BatchNorm (redundant: the
  batch mean removes it and its gradient is exactly zero);
* :func:`bn_in_train_mode` and :func:`batch_dependence` — forgetting ``model.eval()``: one
  sample's prediction depends on the other samples of its batch;
* :func:`last_batch_size` — a data pipeline whose last batch has a single sample (BatchNorm raises);
* :func:`frozen_bn_stats_moving` — γ/β frozen for fine-tuning while the running statistics still
  move in train mode; :func:`freeze_batchnorm` / :class:`FrozenBatchNorm` are the fix;
* :func:`naive_variance` — the one-pass ``E[x²] − E[x]²`` variance that cancels catastrophically
  at a large offset (compare with a two-pass variance such as ``bncourse.numpy``'s).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from bncourse.state import _cuda_devices, is_batchnorm, preserved

__all__ = [
    "is_batchnorm",
    "bias_before_bn",
    "bn_in_train_mode",
    "batch_dependence",
    "last_batch_size",
    "frozen_bn_stats_moving",
    "FrozenBatchNorm",
    "freeze_batchnorm",
    "naive_variance",
]

_AFFINE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


def _leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            yield name, module


def bias_before_bn(model: nn.Module) -> list[str]:
    """Names of affine layers with a bias whose output goes straight into a BatchNorm.

    "Straight" means the next leaf module in definition order is a BatchNorm, which is the execution
    order for ``nn.Sequential`` models (the usual case); models with a custom ``forward`` that
    reorders layers are outside what this static check can see. Returns messages such as
    ``"0 (Linear) -> 1 (BatchNorm1d): bias is redundant before BatchNorm; use bias=False"``.
    """
    leaves = list(_leaves(model))
    found = []
    for (name, layer), (next_name, nxt) in zip(leaves, leaves[1:]):
        if isinstance(layer, _AFFINE_LAYERS) and getattr(layer, "bias", None) is not None \
                and is_batchnorm(nxt):
            found.append(f"{name} ({type(layer).__name__}) -> {next_name} ({type(nxt).__name__}): "
                         "bias is redundant before BatchNorm; use bias=False")
    return found


def bn_in_train_mode(model: nn.Module) -> list[str]:
    """Names of BatchNorm modules that are in training mode (call before predicting)."""
    return [name for name, m in model.named_modules() if is_batchnorm(m) and m.training]


def batch_dependence(model: nn.Module, x: torch.Tensor, index: int = 0,
                     others: torch.Tensor | None = None) -> float:
    """How much sample ``index``'s output changes when the *rest* of its batch changes.

    ``x`` is a batch (N, ...) with N >= 2. The model is run, in its current mode, on ``x`` and on a
    copy in which every other sample is replaced by ``others`` (default: the other samples shifted
    by +5 and scaled by 3). Returns the largest absolute change of output ``index`` — exactly 0
    for a model whose predictions are per-sample (BatchNorm in eval mode), > 0 in train mode.
    Both passes draw the same random numbers (so dropout alone does not count as dependence): those
    that the global torch generator gives next, so a seed set with :func:`bncourse.seeding.set_seed`
    (which follows ``BNCOURSE_SEED_OFFSET``) decides them. The model's parameters, buffers, modes and the global RNG state are left unchanged.
    """
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"batch_dependence needs a batch of at least 2 samples, got shape {tuple(x.shape)}")
    if not 0 <= index < x.shape[0]:
        raise ValueError(f"index {index} is out of range for a batch of {x.shape[0]}")
    x2 = x.clone()
    mask = torch.ones(x.shape[0], dtype=torch.bool)
    mask[index] = False
    if others is None:
        x2[mask] = x[mask] * 3.0 + 5.0
    else:
        if others.shape != x2[mask].shape:
            raise ValueError(f"others must have shape {tuple(x2[mask].shape)}, got {tuple(others.shape)}")
        x2[mask] = others
    # Same random stream for both passes, so dropout draws the same masks: only the batch differs. The
    # stream is the caller's global one (seeded through bncourse.seeding, so it follows BNCOURSE_SEED_OFFSET),
    # replayed for the second pass; `preserved` restores it afterwards.
    with preserved(model), torch.no_grad():
        with torch.random.fork_rng(devices=_cuda_devices(model)):    # the stream is rewound on exit
            y1 = model(x)[index]
        y2 = model(x2)[index]
    return float((y1 - y2).abs().max())


def last_batch_size(num_samples: int, batch_size: int, drop_last: bool = False) -> int | None:
    """Size of the final batch of an epoch (``None`` if every batch is full or it is dropped).

    A result of 1 means BatchNorm will raise ``Expected more than 1 value per channel when
    training`` at the end of every epoch; fix with ``drop_last=True`` or another batch size.
    """
    if num_samples < 0 or batch_size < 1:
        raise ValueError(f"need num_samples >= 0 and batch_size >= 1, got {num_samples}, {batch_size}")
    rest = num_samples % batch_size
    if rest == 0 or drop_last:
        return None
    return rest


def frozen_bn_stats_moving(model: nn.Module, x: torch.Tensor) -> list[str]:
    """BatchNorm modules whose γ and β are frozen but whose running statistics still move.

    Runs one forward pass on ``x`` in the model's *current* mode (under ``no_grad``) and reports
    every BatchNorm whose parameters all have ``requires_grad=False`` (or that has none) and whose
    ``running_mean``/``running_var`` changed. An empty list means freezing is complete (e.g. the
    BN layers are in eval mode, or replaced by :class:`FrozenBatchNorm`). The model is restored.
    """
    bns = {name: m for name, m in model.named_modules() if is_batchnorm(m)}
    frozen = {name: m for name, m in bns.items()
              if not any(p.requires_grad for p in m.parameters(recurse=False))}
    before = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in frozen.items()
              if getattr(m, "running_mean", None) is not None}
    with preserved(model), torch.no_grad():
        model(x)
        moved = [name for name, (rm, rv) in before.items()
                 if not (torch.equal(rm, frozen[name].running_mean)
                         and torch.equal(rv, frozen[name].running_var))]
    return moved


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, all buffers (like torchvision's
    ``FrozenBatchNorm2d``): ``y = x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)``
    and ``shift = bias - running_mean * scale``. ``model.train()`` cannot change its behaviour and
    nothing in it is trainable. Input ``(N, C)`` or ``(N, C, *spatial)``."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.Module) -> "FrozenBatchNorm":
        if getattr(bn, "running_mean", None) is None:
            raise ValueError("cannot freeze a BatchNorm without running statistics "
                             "(track_running_stats=False)")
        frozen = cls(bn.num_features, bn.eps).to(bn.running_mean.device, bn.running_mean.dtype)
        with torch.no_grad():
            if getattr(bn, "weight", None) is not None:
                frozen.weight.copy_(bn.weight)
            if getattr(bn, "bias", None) is not None:
                frozen.bias.copy_(bn.bias)
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, ...), got {tuple(x.shape)}")
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * scale.reshape(shape) + shift.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``model`` (in place) by a :class:`FrozenBatchNorm` with its current
    statistics and parameters; returns ``model``. Its eval-mode outputs are unchanged."""
    for name, child in list(model.named_children()):
        if is_batchnorm(child) and not isinstance(child, FrozenBatchNorm):
            setattr(model, name, FrozenBatchNorm.from_batchnorm(child))
        else:
            freeze_batchnorm(child)
    return model


def naive_variance(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """The one-pass textbook variance ``mean(x**2) - mean(x)**2`` in ``x``'s own dtype.

    This is the *bug*: at a large offset the two terms are huge and nearly equal, and in float32
    their difference can be wildly wrong or negative. Use a two-pass variance (subtract the mean
    first, as ``np.var`` and ``bncourse.numpy`` do) or Welford's algorithm.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"naive_variance expects a floating-point array, got {x.dtype}")
    return (x * x).mean(axis=axis) - x.mean(axis=axis) ** 2
