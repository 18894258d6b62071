"""BatchNorm's batch noise as a regularizer, isolated with ghost batches.

In training, each example is normalized with the mean and variance of the batch it happens to be in: a noise
whose size shrinks like ``1/sqrt(m)`` with the number ``m`` of examples the statistics are computed from.
To see what this noise does to generalization without changing anything else, :class:`GhostBatchNorm1d`
(Hoffer et al., 2017) computes BN's statistics over *ghost batches*: consecutive chunks of ``ghost_size``
examples of the optimizer's batch. The optimizer's batch, the learning rate, the data order and the number
of steps stay the same; only the noise of the statistics changes.

:func:`ghost_gap_experiment` trains the same MLP with small and large ghost batches on a small training set
and measures the generalization gap (validation loss minus training loss, both in evaluation mode).
"""
from __future__ import annotations

import torch
from torch import nn

from bncourse.data import ImageData
from bncourse.models import mlp
from bncourse.training import evaluate, set_seed, train

__all__ = ["GhostBatchNorm1d", "ghost_gap_experiment"]


class GhostBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training-mode statistics come from chunks of ``ghost_size`` rows of the batch.

    Input (N, C). In training mode the batch is split into ``ceil(N / ghost_size)`` consecutive chunks, each
    normalized with its own biased statistics; the running statistics are updated once per chunk (so the EMA
    sees ``N / ghost_size`` updates per step). Evaluation mode is plain ``BatchNorm1d``. With
    ``ghost_size >= N`` it is exactly ``BatchNorm1d``.
    """

    def __init__(self, num_features: int, ghost_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if ghost_size < 2:
            raise ValueError(f"ghost_size must be >= 2 (BN needs two values per channel), got {ghost_size}")
        self.ghost_size = int(ghost_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.ghost_size:
            return super().forward(x)
        return torch.cat([super(GhostBatchNorm1d, self).forward(chunk) for chunk in x.split(self.ghost_size)])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ghost_size={self.ghost_size}"


def ghost_gap_experiment(data: ImageData, seed: int, *, ghost_sizes: tuple[int, ...] = (8, 128),
                         n_train: int = 2000, epochs: int = 30, batch_size: int = 128,
                         lr: float = 0.1, n_val: int = 2000) -> dict[int, dict[str, float]]:
    """Train a 784-128-128-10 MLP with :class:`GhostBatchNorm1d` before each ReLU, once per ghost size, on the
    first ``n_train`` training images (SGD with momentum 0.9, the same seed, batches and steps for all).

    Returns ``{ghost_size: {"train_loss", "val_loss", "train_acc", "val_acc", "gap"}}`` with every metric in
    evaluation mode (training metrics on the ``n_train`` images, validation on the first ``n_val``) and
    ``gap = val_loss - train_loss``.
    """
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    out = {}
    for g in ghost_sizes:
        set_seed(seed)
        model = mlp([784, 128, 128, 10], norm=lambda width, g=g: GhostBatchNorm1d(width, g))
        train(model, (x, y), epochs=epochs, batch_size=batch_size, lr=lr, sgd_momentum=0.9, seed=seed,
              progress=False)
        tr_loss, tr_acc = evaluate(model, x, y)
        va_loss, va_acc = evaluate(model, data.x_val[:n_val], data.y_val[:n_val])
        out[g] = {"train_loss": tr_loss, "val_loss": va_loss, "train_acc": tr_acc, "val_acc": va_acc,
                  "gap": va_loss - tr_loss}
    return out
