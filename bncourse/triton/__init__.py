"""BatchNorm as fused Triton kernels, drop-in for ``torch.nn`` (CUDA; CPU through Triton's interpreter).

* :func:`batch_norm` — same signature, results and errors as ``torch.nn.functional.batch_norm``; a
  ``torch.autograd.Function`` whose forward and backward are each two kernel launches (a reduction,
  then one element-wise pass), one launch in evaluation.
* :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d` — drop-in for ``torch.nn``.
* :func:`is_available` — whether Triton is installed; ``INSTALL_HINT`` says how to get it.

Triton is optional: this package imports without it, and calling :func:`batch_norm` then raises
``ImportError`` with ``INSTALL_HINT``. On CPU, set ``TRITON_INTERPRET=1`` in the environment before
``triton`` is first imported to run the kernels in Triton's interpreter (slow: small inputs only).
"""
from .functional import INSTALL_HINT, batch_norm, is_available
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "is_available", "INSTALL_HINT"]
