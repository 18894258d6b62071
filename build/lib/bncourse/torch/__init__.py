"""BatchNorm in PyTorch from plain tensor ops (CPU and CUDA), drop-in for ``torch.nn``.

* :func:`batch_norm` — same signature, results and errors as ``torch.nn.functional.batch_norm``;
  a ``torch.autograd.Function`` with an explicit (compact-formula) backward.
* :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d` — drop-in for ``torch.nn``.
* :func:`convert_batchnorm` — swap torch.nn's BatchNorm layers in a model for these.
"""
from .convert import convert_batchnorm
from .functional import batch_norm
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "convert_batchnorm"]
