"""``convert_batchnorm``: swap torch.nn's BatchNorm layers in a model for bncourse's."""
from __future__ import annotations

import torch
from torch import nn

from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm

__all__ = ["convert_batchnorm"]

_REPLACEMENT: dict[type, type[_BatchNorm]] = {
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
}


def take_over(new: _BatchNorm, old: nn.Module) -> _BatchNorm:
    """Give ``new`` (built on the meta device) the parameters, buffers, mode and ``qconfig`` of ``old``.

    The *same* tensors are taken over, so device, dtype, ``requires_grad`` and optimizer references
    are kept; a non-persistent buffer stays non-persistent. Returns ``new``.
    """
    with torch.no_grad():
        for name in ("weight", "bias"):
            setattr(new, name, getattr(old, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            new.register_buffer(name, getattr(old, name),
                                persistent=name not in old._non_persistent_buffers_set)
    new.training = old.training
    if hasattr(old, "qconfig"):
        new.qconfig = old.qconfig
    return new


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``torch.nn.BatchNorm1d/2d/3d`` in ``module`` (recursively) by bncourse's.

    Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: the new layers take over the *same*
    parameter and buffer tensors (so device, dtype, ``requires_grad`` and optimizer references are
    kept), the hyper-parameters, the ``training`` flag and ``qconfig``. Only these exact classes are
    replaced, not subclasses (which may override ``forward``) nor ``SyncBatchNorm`` or the lazy
    variants. Returns the converted module: the new root if ``module`` itself is a BatchNorm.
    """
    converted = module
    new_cls = _REPLACEMENT.get(type(module))
    if new_cls is not None:
        converted = take_over(new_cls(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats, device="meta",
                                      bias=module.bias is not None or not module.affine), module)
    for name, child in module.named_children():
        converted.add_module(name, convert_batchnorm(child))
    return converted
