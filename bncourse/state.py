"""Leaving a model as it was found, and telling BatchNorm layers apart.

* :func:`preserved` -- the one context manager that snapshots a model's parameters, buffers (BN running
  statistics, ``num_batches_tracked``), the train/eval flag of every submodule and the global torch RNG,
  and restores them on exit, also when the block raises. Every measurement and detector of the package
  that must not change the model it looks at runs inside it.
* :func:`is_batchnorm` -- "is this a BatchNorm layer": ``torch.nn``'s, the course's drop-ins and
  ``FrozenBatchNorm``; :func:`batchnorm_layers` lists the ones with running statistics.
* :func:`as_model_input` -- inputs as a tensor of the model's floating dtype.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["preserved", "is_batchnorm", "batchnorm_layers", "as_model_input"]

ArrayLike = np.ndarray | torch.Tensor


def is_batchnorm(module: nn.Module) -> bool:
    """True for ``torch.nn`` BatchNorm layers and for drop-ins with the same buffers (e.g.
    ``bncourse.torch.BatchNorm1d``, ``bncourse.pitfalls.FrozenBatchNorm``): anything with
    ``running_mean`` and ``num_features`` whose class name contains ``BatchNorm``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return ("BatchNorm" in type(module).__name__ and hasattr(module, "running_mean")
            and hasattr(module, "num_features"))


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` that keep running statistics and a ``momentum`` (the ones that
    training-mode forward passes update), in ``model.modules()`` order."""
    return [m for m in model.modules()
            if is_batchnorm(m) and getattr(m, "running_mean", None) is not None and hasattr(m, "momentum")]


def _cuda_devices(model: nn.Module) -> list[int]:
    tensors = list(model.parameters()) + list(model.buffers())
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


@contextlib.contextmanager
def preserved(model: nn.Module, *, params: bool = True, buffers: bool = True, modes: bool = True,
              rng: bool = True) -> Iterator[nn.Module]:
    """Within the block, change ``model`` freely; on exit it is as it was found.

    Args:
        model: any ``nn.Module``.
        params: restore every parameter's values (in place: optimizers and hooks keep their tensors).
        buffers: restore every buffer (BN ``running_mean``/``running_var``/``num_batches_tracked``).
        modes: restore the ``training`` flag of every submodule (mixed train/eval models included).
        rng: restore the global torch RNG (CPU, and the CUDA devices the model lives on), so random
            draws inside the block (dropout, noise layers) do not shift the caller's random stream.

    Each part can be switched off where the caller wants to keep that change (e.g. ``params=False``
    for a pass that should only be undone in the buffers). ``.grad`` is not touched.

    Example::

        with preserved(model):
            model.train()
            model(x)          # moves the running statistics ...
        # ... which are back here, and so are the modes and the RNG
    """
    saved: dict[str, torch.Tensor] = {}
    if params:
        saved.update({f"p:{name}": p.detach().clone() for name, p in model.named_parameters()})
    if buffers:
        saved.update({f"b:{name}": b.detach().clone() for name, b in model.named_buffers()})
    flags = {name: m.training for name, m in model.named_modules()} if modes else {}
    with contextlib.ExitStack() as stack:
        if rng:
            stack.enter_context(torch.random.fork_rng(devices=_cuda_devices(model)))
        try:
            yield model
        finally:
            current = {f"p:{n}": p for n, p in model.named_parameters()}
            current.update({f"b:{n}": b for n, b in model.named_buffers()})
            with torch.no_grad():
                for key, value in saved.items():
                    if key in current:
                        current[key].copy_(value)
            for name, m in model.named_modules():
                if name in flags:
                    m.training = flags[name]


def _model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter or buffer (float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if torch.is_floating_point(t):
            return t.dtype
    return torch.float32


def as_model_input(x: ArrayLike, model: nn.Module) -> torch.Tensor:
    """``x`` as a tensor of the model's floating dtype (float32 data stays float32 for float32 models)."""
    t = torch.as_tensor(x)
    dtype = _model_dtype(model)
    return t if t.dtype == dtype else t.to(dtype)
