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
        converted = new_cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, device="meta",
                            bias=module.bias is not None or not module.affine)
        with torch.no_grad():
            for name in ("weight", "bias"):
                setattr(converted, name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted.register_buffer(name, getattr(module, name),
                                          persistent=name not in module._non_persistent_buffers_set)
        converted.training = module.training
        if hasattr(module, "qconfig"):
            converted.qconfig = module.qconfig
    for name, child in module.named_children():
        converted.add_module(name, convert_batchnorm(child))
    return converted
