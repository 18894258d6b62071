"""Folding an evaluation-mode BatchNorm into the Linear or Conv2d layer in front of it.

In evaluation mode BN is a fixed affine map per channel, ``y = a * z + c`` with
``a = gamma / sqrt(running_var + eps)`` and ``c = beta - a * running_mean``. When ``z = W u + b`` comes from a
Linear or convolution, ``y = (a W) u + (a b + c)``: the pair is one layer with every output channel's weights
scaled by ``a`` and bias ``a b + c``. Inference then costs nothing for BN.

:func:`fold_batchnorm` builds the folded layer (a new module; the inputs are not modified);
:func:`fold_sequential` folds every ``(Linear|Conv2d, BatchNorm)`` pair of an ``nn.Sequential`` tree. The
tests check both against ``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["bn_affine", "fold_batchnorm", "fold_sequential"]

_BN = nn.modules.batchnorm._BatchNorm


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(a, c)`` of an evaluation-mode BN: ``bn(z) == a * z + c`` along channel axis 1.

    Shapes: ``a`` and ``c`` are (C,), in the dtype of the running statistics. Raises ``ValueError`` when
    ``bn`` is in training mode or has no running statistics (then it has no fixed affine map).
    """
    if not isinstance(bn, _BN):
        raise TypeError(f"expected a BatchNorm module, got {type(bn).__name__}")
    if bn.training:
        raise ValueError("folding needs the BatchNorm in eval mode (call .eval()): in training mode it "
                         "normalizes with batch statistics, which no fixed weight can reproduce")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("folding needs running statistics (track_running_stats=True)")
    a = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    c = -a * bn.running_mean
    if bn.bias is not None:
        c = c + bn.bias
    return a.detach(), c.detach()


def fold_batchnorm(layer: nn.Linear | nn.Conv2d, bn: nn.Module) -> nn.Linear | nn.Conv2d:
    """A new layer equal to ``bn(layer(u))`` for an evaluation-mode ``bn``.

    ``layer`` is an ``nn.Linear`` (weight ``(C, in)``) or an ``nn.Conv1d/2d/3d`` (weight
    ``(C, in / groups, k1, ...)``);
    ``bn`` has ``C`` channels. The result always has a bias (``a b + c``, with ``b = 0`` when ``layer`` has
    none) and is in eval mode; neither input is modified.
    """
    if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"can fold into nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
    a, c = bn_affine(bn)
    out_channels = layer.weight.shape[0]
    if a.shape[0] != out_channels:
        raise ValueError(f"the layer has {out_channels} output channels but the BatchNorm has {a.shape[0]}")
    fused = copy.deepcopy(layer).eval()
    with torch.no_grad():
        w = layer.weight
        fused.weight.copy_(w * a.to(w.dtype).reshape((-1,) + (1,) * (w.dim() - 1)))
        b = layer.bias if layer.bias is not None else torch.zeros(out_channels, dtype=w.dtype, device=w.device)
        if fused.bias is None:
            fused.bias = nn.Parameter(torch.empty_like(b))
        fused.bias.copy_(a.to(w.dtype) * b + c.to(w.dtype))
    return fused


def fold_sequential(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (in eval mode) in which every BatchNorm that directly follows a Linear or
    convolution inside the same ``nn.Sequential`` is folded into it and replaced by ``nn.Identity`` (names are
    kept, so ``state_dict`` keys of other layers stay valid). BN layers elsewhere are left as they are."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for prev, name in zip(names, names[1:]):
            first, second = module._modules[prev], module._modules[name]
            if isinstance(second, _BN) and isinstance(first, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module._modules[prev] = fold_batchnorm(first, second)
                module._modules[name] = nn.Identity()
    return folded
