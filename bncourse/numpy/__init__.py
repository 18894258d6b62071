"""BatchNorm in NumPy, with PyTorch's conventions (torch 2.13).

* ``functional`` -- the plain code the chapters show: ``batchnorm_forward`` -> ``(y, cache)``;
  ``batchnorm_backward`` (compact formula) and ``batchnorm_backward_staged`` (the chain rule one line
  at a time) -> ``(dx, dweight, dbias)``.
* ``layer``      -- ``BatchNorm``: parameters, running buffers, train/eval, state_dict; it runs the
  same computation tuned for speed (the private ``_fast``).
* ``gradcheck``  -- centred finite differences that report the worst element.

Shapes: inputs are ``(N, C)`` or ``(N, C, *spatial)``; statistics are per channel (dimension 1).
"""
from bncourse.numpy.functional import (
    BatchNormCache,
    batchnorm_backward,
    batchnorm_backward_staged,
    batchnorm_forward,
)
from bncourse.numpy.gradcheck import (
    GradientReport,
    check_gradient,
    gradcheck_batchnorm,
    numerical_gradient,
)
from bncourse.numpy.layer import BatchNorm, IncompatibleKeys

__all__ = [
    "BatchNorm",
    "BatchNormCache",
    "GradientReport",
    "IncompatibleKeys",
    "batchnorm_backward",
    "batchnorm_backward_staged",
    "batchnorm_forward",
    "check_gradient",
    "gradcheck_batchnorm",
    "numerical_gradient",
]

# The normalization family on one standardize forward and one compact backward.
from bncourse.numpy.standardize import (  # noqa: E402
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    RMSNorm,
    StandardizeCache,
    standardize_backward,
    standardize_forward,
)

__all__ += ["GroupNorm", "InstanceNorm", "LayerNorm", "RMSNorm", "StandardizeCache",
            "standardize_backward", "standardize_forward"]
