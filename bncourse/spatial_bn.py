"""BatchNorm in convolutional networks: statistics per channel, pooled over the batch and every position.

``BatchNorm2d`` on an (N, C, H, W) input keeps one mean/variance (and one gamma/beta) per channel, computed
from N·H·W values. A tempting mistake is to normalize every *position* separately, as if the feature map
were a flat vector of C·H·W features (``BatchNorm1d`` on the flattened map): :class:`PerPositionBatchNorm`.
It has H·W times more statistics, each estimated from only N values, and it breaks the convolution's
translation equivariance -- the same pattern is normalized differently at different places.

:func:`shift_equivariance_error` measures the last point; :func:`conv_norm_experiment` trains the course's
small CNN with both layers on Fashion-MNIST.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bncourse.data import ImageData
from bncourse.models import small_cnn
from bncourse.training import evaluate, set_seed, train

__all__ = ["PerPositionBatchNorm", "per_position_norm", "shift_equivariance_error", "conv_norm_experiment"]


class PerPositionBatchNorm(nn.Module):
    """The wrong way to batch-normalize a feature map: ``BatchNorm1d(C*H*W)`` on the flattened input.

    Input (N, C, H, W) with ``(C, H, W) == shape``; output of the same shape. Statistics and gamma/beta per
    (channel, row, column), each from the N values of the batch."""

    def __init__(self, shape: tuple[int, int, int], **kwargs):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.bn = nn.BatchNorm1d(int(np.prod(self.shape)), **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        return self.bn(x.flatten(1)).view_as(x)


def per_position_norm(in_hw: tuple[int, int] = (28, 28)):
    """A ``norm`` factory for :func:`bncourse.models.small_cnn` that puts a :class:`PerPositionBatchNorm` after
    each conv (padding 1 keeps the size; each block's 2×2 max-pool halves it for the next block)."""
    state = {"hw": in_hw}

    def make(channels: int) -> nn.Module:
        h, w = state["hw"]
        state["hw"] = (h // 2, w // 2)
        return PerPositionBatchNorm((channels, h, w))

    return make


def shift_equivariance_error(norm: nn.Module, x: torch.Tensor, shift: int = 1) -> float:
    """Largest ``|norm(roll(x)) - roll(norm(x))|`` with ``roll`` a circular shift by ``shift`` columns, in
    evaluation mode (float64 inputs give exact zeros for a per-channel normalization). ``x``: (N, C, H, W)."""
    was_training = norm.training
    norm.eval()
    try:
        with torch.no_grad():
            a = norm(torch.roll(x, shift, dims=3))
            b = torch.roll(norm(x), shift, dims=3)
        return float((a - b).abs().max())
    finally:
        norm.train(was_training)


def conv_norm_experiment(data: ImageData, seed: int, *, n_train: int = 2000, batch_size: int = 16,
                         epochs: int = 1, n_val: int = 2000, lr: float = 0.05,
                         channels: tuple[int, ...] = (16, 32), shift: int = 0) -> dict[str, float]:
    """Train ``small_cnn(channels=channels)`` without normalization, with ``BatchNorm2d`` and with
    :class:`PerPositionBatchNorm` (SGD with learning rate ``lr``, momentum 0.9; the same seed, initialization
    draws and batches for the three). ``data`` must hold images (``flatten=False``).

    Returns ``{label: validation accuracy}`` for labels ``"none"``, ``"BatchNorm2d"``, ``"per position"``;
    with ``shift > 0`` also ``{label + " shifted": accuracy}`` on the same validation images rolled by ``shift``
    pixels to the right (a translation the per-channel network nearly ignores and the per-position one does not).
    """
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    if data.x_train.ndim != 4:
        raise ValueError("conv_norm_experiment needs images of shape (n, 1, H, W): load_images(flatten=False)")
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    hw = tuple(data.x_train.shape[2:])
    out = {}
    for label, norm in (("none", None), ("BatchNorm2d", "bn"), ("per position", per_position_norm(hw))):
        set_seed(seed)
        model = small_cnn(tuple(data.x_train.shape[1:]), channels=channels, norm=norm)
        train(model, (x, y), epochs=epochs, batch_size=batch_size, lr=lr, sgd_momentum=0.9, seed=seed,
              progress=False)
        out[label] = evaluate(model, data.x_val[:n_val], data.y_val[:n_val])[1]
        if shift:
            out[f"{label} shifted"] = evaluate(model, np.roll(data.x_val[:n_val], shift, axis=3), data.y_val[:n_val])[1]
    return out
