"""Fine-tuning a BatchNorm network on a new domain: which parts of BN to freeze, and how each choice fails.

Three ways to treat BN while a pretrained network is fine-tuned on new data:

* ``"train"``: BN as in training (batch statistics, running statistics updated, gamma/beta trained);
* ``"frozen stats"``: the running statistics are fixed (BN always normalizes with the *source* statistics,
  whatever ``model.train()`` says), gamma/beta are still trained -- :class:`StatsFrozenBatchNorm`;
* ``"frozen BN"``: statistics and gamma/beta fixed, BN is a constant affine map --
  :class:`bncourse.pitfalls.FrozenBatchNorm`.

:func:`finetune_experiment` pretrains a BN MLP on Fashion-MNIST, then fine-tunes a copy with each choice on a
small labelled set of a shifted domain (contrast reduced and brightened: ``0.4 * x + 0.5``) and reports the
target-domain test accuracy. The failure modes it exposes:

* freezing the statistics under a domain shift keeps normalizing with statistics that no longer describe
  the data -- ``"train"`` adapts them and wins when the batches are large enough;
* training BN with very small fine-tuning batches makes the batch statistics noisy and the running
  statistics drift, which is why detection and segmentation codebases freeze BN (small per-GPU batches).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData
from bncourse.models import mlp
from bncourse.pitfalls import freeze_batchnorm, is_batchnorm
from bncourse.training import evaluate, set_seed, train

__all__ = ["StatsFrozenBatchNorm", "freeze_statistics", "prepare_finetune", "shift_domain",
           "finetune_experiment", "STRATEGIES"]

#: The three ways to treat BN while fine-tuning (see the module docstring).
STRATEGIES = ("train", "frozen stats", "frozen BN")


class StatsFrozenBatchNorm(nn.Module):
    """BatchNorm whose running statistics are fixed buffers (used in training *and* evaluation) while
    ``weight``/``bias`` stay trainable parameters. Input ``(N, C)`` or ``(N, C, *spatial)``."""

    def __init__(self, bn: nn.Module):
        super().__init__()
        if getattr(bn, "running_mean", None) is None:
            raise ValueError("cannot freeze the statistics of a BatchNorm without running statistics "
                             "(track_running_stats=False)")
        self.eps = bn.eps
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.weight = None if bn.weight is None else nn.Parameter(bn.weight.detach().clone())
        self.bias = None if bn.bias is None else nn.Parameter(bn.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                        training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, eps={self.eps}, statistics frozen"


def freeze_statistics(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``model`` (in place) by a :class:`StatsFrozenBatchNorm`; returns ``model``."""
    for name, child in list(model.named_children()):
        if is_batchnorm(child):
            setattr(model, name, StatsFrozenBatchNorm(child))
        else:
            freeze_statistics(child)
    return model


def prepare_finetune(model: nn.Module, strategy: str) -> nn.Module:
    """A deep copy of ``model`` set up for ``strategy`` (one of :data:`STRATEGIES`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    model = copy.deepcopy(model)
    if strategy == "frozen stats":
        freeze_statistics(model)
    elif strategy == "frozen BN":
        freeze_batchnorm(model)
    return model


def shift_domain(x: np.ndarray) -> np.ndarray:
    """The target domain: lower contrast, brighter background (``0.4 * x + 0.5``), same shape and dtype."""
    return (0.4 * x + 0.5).astype(x.dtype)


def finetune_experiment(data: ImageData, seed: int, *, batch_sizes: tuple[int, ...] = (2, 32),
                        n_pretrain: int = 10_000, n_target: int = 512, finetune_epochs: int = 2,
                        n_test: int = 2000, lr_rule: str = "linear") -> dict[tuple[str, int], float]:
    """Pretrain a 784-64-64-10 BN MLP on ``n_pretrain`` source images (1 epoch, SGD lr 0.05 with momentum 0.9,
    batch 64), then fine-tune a copy per strategy and batch size on ``n_target`` images of the shifted domain
    (``finetune_epochs`` epochs, SGD with momentum 0.9 and learning rate ``0.02 * batch / 32``: every batch size
    takes the same sum of learning rates per epoch, so the strategies are compared at equal training per sample;
    ``lr_rule="sqrt"`` scales it as ``0.02 * sqrt(batch / 32)`` instead).

    Returns ``{(strategy, batch_size): accuracy}`` on the first ``n_test`` shifted test images (evaluation
    mode), plus ``("source model", 0)``: the pretrained model on the shifted test images before fine-tuning.
    """
    if lr_rule not in ("sqrt", "linear"):
        raise ValueError(f"lr_rule must be 'sqrt' or 'linear', got {lr_rule!r}")
    set_seed(seed)
    source = mlp([784, 64, 64, 10], norm="bn")
    train(source, (data.x_train[:n_pretrain], data.y_train[:n_pretrain]), epochs=1, batch_size=64, lr=0.05,
          sgd_momentum=0.9, seed=seed, progress=False)
    start = n_pretrain
    x_tgt = shift_domain(data.x_train[start:start + n_target])
    y_tgt = data.y_train[start:start + n_target]
    x_test, y_test = shift_domain(data.x_test[:n_test]), data.y_test[:n_test]
    results = {("source model", 0): evaluate(source, x_test, y_test)[1]}
    for strategy in STRATEGIES:
        for bs in batch_sizes:
            model = prepare_finetune(source, strategy)
            lr = 0.02 * (math.sqrt(bs / 32) if lr_rule == "sqrt" else bs / 32)
            train(model, (x_tgt, y_tgt), epochs=finetune_epochs, batch_size=bs, lr=lr,
                  sgd_momentum=0.9, seed=seed + 1, progress=False)
            results[strategy, bs] = evaluate(model, x_test, y_test)[1]
    return results
