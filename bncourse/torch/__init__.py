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

# The normalization family on one generic ``standardize`` (modules ``norm_functional``, ``norms``, ``renorm``).
from .norms import GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, LayerNorm, RMSNorm
from .renorm import BatchRenorm1d, BatchRenorm2d, batch_renorm, linear_ramp, paper_schedule
from .norm_functional import group_norm, instance_norm, layer_norm, rms_norm, standardize

__all__ += ["LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm",
            "BatchRenorm1d", "BatchRenorm2d", "batch_renorm", "linear_ramp", "paper_schedule",
            "standardize", "layer_norm", "group_norm", "instance_norm", "rms_norm"]
