"""``batch_norm``: torch.nn.functional.batch_norm as fused Triton kernels.

Same signature, results and errors as ``torch.nn.functional.batch_norm`` (the argument checks are
:func:`bncourse.torch.functional.check_batch_norm_args`). Shapes: ``input`` is ``(N, C)`` or
``(N, C, *spatial)``, contiguous or channels_last / channels_last_3d (any other layout is made
contiguous first: one copy); ``running_mean``, ``running_var``, ``weight``, ``bias`` are ``(C,)``.

Kernel launches (see :mod:`bncourse.triton._kernels`):

* training forward: a reduction pass (per-channel sums, split over rows), then one element-wise pass
  that finishes the statistics, updates the running buffers and writes ``y``;
* evaluation forward: one element-wise pass;
* backward: a reduction pass for ``sum(dy)`` and ``sum(dy * (x - mean))``, then one element-wise
  pass for ``dx`` that also writes ``dgamma``, ``dbeta``.

Numerics
  * float32, float16 and bfloat16 input, accumulated in float32; the output has the input's dtype.
    Parameters and buffers are float32 or the input's dtype, as torch allows. float64 input is
    refused (use :mod:`bncourse.torch`).
  * Statistics are *shifted* sums: ``sum(x - k)`` and ``sum((x - k)**2)`` with ``k`` the channel's
    first value, so ``var = E[(x-k)^2] - E[x-k]^2`` does not cancel catastrophically when the mean is
    large against the spread (float32, offset 1e4, std 1e-2: within 1e-6 relative of float64, where
    the textbook ``E[x^2] - E[x]^2`` has no correct digit). The output is
    ``((x - k) - (mean - k)) * invstd * weight + bias``: a constant channel gives exactly ``bias``.
  * Training normalizes with the biased variance and stores the unbiased one in ``running_var``;
    ``running = (1 - momentum) * running + momentum * batch_stat``.
  * The backward is chapter 5's compact formula; it is not itself differentiable (double backward
    raises).

Devices: CUDA tensors run compiled kernels. CPU tensors run only in Triton's interpreter, i.e. with
``TRITON_INTERPRET=1`` in the environment before ``triton`` is first imported — slow, for testing and
teaching.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..torch._layout import Layout
from ..torch.functional import check_batch_norm_args

__all__ = ["batch_norm", "is_available", "INSTALL_HINT"]

INSTALL_HINT = ("bncourse.triton needs Triton: pip install triton (or pip install 'bncourse[triton]'); "
                "without it use bncourse.torch")

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def is_available() -> bool:
    """True when ``triton`` can be imported (the kernels can then run on CUDA, or interpreted)."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def _kernels() -> ModuleType:
    """The kernel module, imported on first use; ``ImportError`` with ``INSTALL_HINT`` if absent."""
    try:
        from . import _kernels as k
    except ImportError as exc:
        if not is_available():
            raise ImportError(INSTALL_HINT) from exc
        raise
    return k


def _check_runnable(input: Tensor, kernels: ModuleType) -> None:
    if input.dtype not in _SUPPORTED:
        raise TypeError(f"bncourse.triton.batch_norm supports float32, float16 and bfloat16 input, "
                        f"got {input.dtype}; use bncourse.torch.batch_norm for it")
    if input.device.type == "cpu" and not kernels.INTERPRETED:
        raise RuntimeError("bncourse.triton.batch_norm runs compiled on CUDA tensors; CPU tensors need "
                           "Triton's interpreter (TRITON_INTERPRET=1 set before bncourse.triton first "
                           "runs; slow) — or use bncourse.torch.batch_norm")
    if input.device.type == "cuda" and kernels.INTERPRETED:
        raise RuntimeError("bncourse.triton.batch_norm: Triton runs in interpreter mode "
                           "(TRITON_INTERPRET=1), which takes CPU tensors, not CUDA ones")
    if input.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"bncourse.triton.batch_norm runs on CUDA (or CPU, interpreted), "
                           f"not on {input.device.type}")


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over dim 1 with fused Triton kernels; ``F.batch_norm``'s signature.

    ``input`` ``(N, C, *spatial)`` -> output of the same shape, dtype and memory format. In training the
    running buffers (if given) are updated in place, inside the kernel.

    float32, float16 and bfloat16 input, summed in float32 (float64 raises ``TypeError``). The
    statistics are shifted sums, ``sum(x - k)`` and ``sum((x - k)**2)`` with ``k`` a value of the
    channel, and the output is ``((x - k) - (mean - k)) * invstd * weight + bias``: accurate when the
    mean is large against the spread, and exactly ``bias`` for a constant channel. CUDA tensors run
    compiled; CPU tensors need Triton's interpreter (``TRITON_INTERPRET=1`` before ``triton`` is
    first imported). The backward is not itself differentiable.
    """
    out = check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum,
                                eps)
    if out is not None:
        return out
    _check_runnable(input, _kernels())
    return _BatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                    bool(training), float(momentum), float(eps))


def _as_layout(t: Tensor, layout: Layout) -> Tensor:
    """``t`` with the strides the kernels assume for ``layout`` (a copy only where it differs)."""
    if layout.channels_last:
        fmt = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
        return t.contiguous(memory_format=fmt)
    return t.contiguous()


class _BatchNormFunction(torch.autograd.Function):
    """Forward and backward as kernel launches; see the module docstring."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None,
                training: bool, momentum: float, eps: float) -> Tensor:
        kernels = _kernels()
        layout = Layout.of(x)
        x = _as_layout(x, layout)
        plan = kernels.make_plan(layout, x.device)
        y = torch.empty_like(x)
        needs_grad = any(ctx.needs_input_grad[:3])
        save = (torch.empty((3, plan.C), device=x.device, dtype=torch.float32)
                if training and needs_grad else None)
        kernels.forward(plan, x, y, weight, bias, running_mean, running_var, training, momentum,
                        eps, save)
        ctx.layout, ctx.plan, ctx.training, ctx.eps = layout, plan, training, eps
        if weight is not None:
            ctx.param_dtype = weight.dtype
        elif bias is not None:
            ctx.param_dtype = bias.dtype
        if needs_grad:
            if training:
                ctx.save_for_backward(x, weight, save)
            else:
                ctx.save_for_backward(x, weight, running_mean, running_var)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        kernels = _kernels()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.training:
            x, weight, save = ctx.saved_tensors
            running_mean = running_var = None
        else:
            x, weight, running_mean, running_var = ctx.saved_tensors
            save = None
        dy = _as_layout(dy, ctx.layout)
        dx, dw, db = kernels.backward(ctx.plan, x, dy, weight, save, running_mean, running_var,
                                      ctx.training, ctx.eps, need_x, need_w, need_b,
                                      getattr(ctx, "param_dtype", torch.float32))
        return dx, dw, db, None, None, None, None, None
