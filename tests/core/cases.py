"""The cases every backend is compared on, and the torch-side helpers that run them.

``MODULE_CASES``: ModuleInfo's constructor/input combinations of ``torch.nn.BatchNorm{1,2,3}d``
(``common_modules.py``, torch 2.13) as ``(class name, description, ctor args, ctor kwargs, input
shape)``; ``opinfo_samples``: the OpInfo samples of ``nn.functional.batch_norm``
(``sample_inputs_batch_norm``). Used by the backend suite (``test_parity.py``), the torch module
tests and the Triton tests.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close, make_tensor

import bncourse.torch as bt
from torch_compat import needs_bias_kw

TORCH_CLASSES = {"BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d,
                 "BatchNorm3d": nn.BatchNorm3d}
OUR_CLASSES = {"BatchNorm1d": bt.BatchNorm1d, "BatchNorm2d": bt.BatchNorm2d,
               "BatchNorm3d": bt.BatchNorm3d}


def _module_cases():
    """(class name, desc, ctor args, ctor kwargs, input shape) — ModuleInfo, torch 2.13."""
    cases = [
        ("BatchNorm1d", "affine", (10,), {}, (4, 10)),
        ("BatchNorm1d", "3d_input", (5,), {}, (4, 5, 3)),
        ("BatchNorm1d", "affine_simple_average", (10, 1e-3, None), {}, (4, 10)),
        ("BatchNorm1d", "not_affine", (10, 1e-3, 0.3, False), {}, (4, 10)),
        ("BatchNorm1d", "not_tracking_stats", (10, 1e-3, 0.3, True, False), {}, (4, 10)),
        ("BatchNorm1d", "3d_input_not_affine", (5, 1e-3, 0.3, False), {}, (4, 5, 3)),
        ("BatchNorm1d", "zero_batch", (5, 1e-3, 0.3, False), {}, (0, 5, 9)),
        ("BatchNorm1d", "affine_not_bias", (10,), {"bias": False}, (4, 10)),
    ]
    for name, mom, shape, zshape in (("BatchNorm2d", 0.8, (2, 3, 6, 6), (0, 5, 2, 2)),
                                     ("BatchNorm3d", 0.7, (2, 3, 4, 4, 4), (0, 5, 2, 2, 2))):
        cases += [
            (name, "", (3,), {}, shape),
            (name, "simple_average", (3, 1e-3, None), {}, shape),
            (name, "momentum", (3, 1e-3, mom), {}, shape),
            (name, "not_affine", (3, 1e-3, mom, False), {}, shape),
            (name, "not_tracking_stats", (3, 1e-3, mom, True, False), {}, shape),
            (name, "zero_batch", (5, 1e-3, 0.3, False), {}, zshape),
            (name, "affine_not_bias", (3,), {"bias": False}, shape),
        ]
    return cases


# torch < 2.13 has no keyword-only ``bias`` and no ``bias=`` in the repr (e.g. a CUDA box's 2.11)

MODULE_CASES = [c if "bias" not in c[3] else pytest.param(c, marks=needs_bias_kw)
                for c in _module_cases()]
MODULE_IDS = [f"{c[0]}-{c[1] or 'default'}" for c in _module_cases()]


def tols(dtype: torch.dtype) -> dict:
    """float64: ~1e-10 (semantics); others: assert_close's defaults for the dtype."""
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {}


def reference_module(name, args, kwargs, device, dtype, seed=0):
    """torch.nn's module with random affine parameters and buffers (so that every term counts)."""
    ref = TORCH_CLASSES[name](*args, **kwargs, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
        if ref.running_var is not None:
            ref.running_mean.copy_(torch.randn(ref.num_features, generator=g, dtype=dtype))
            ref.running_var.copy_(torch.rand(ref.num_features, generator=g, dtype=dtype) + 0.5)
    return ref


def make_pair(name, args, kwargs, device, dtype, seed=0):
    """A torch.nn module and ours with the same random affine parameters and buffers."""
    ref = reference_module(name, args, kwargs, device, dtype, seed)
    ours = OUR_CLASSES[name](*args, **kwargs, device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def outcome(fn):
    """``(exception type, message)`` of what ``fn()`` raises, None if it returns."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - we compare whatever torch raises
        return type(exc), str(exc)
    return None


def random_batch(shape, device, dtype, g, memory_format=torch.contiguous_format):
    """Per-channel offsets and scales so that the statistics are not trivial."""
    c = shape[1]
    view = (1, c) + (1,) * (len(shape) - 2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = x * (torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.2).view(view)
    x = x + (torch.randn(c, generator=g, dtype=torch.float64) * 2).view(view)
    return x.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)


def step_and_compare(ref, ours, x, dy, tol):
    """One forward + backward through both; compare outputs, grads and buffers."""
    for m in (ref, ours):
        m.zero_grad(set_to_none=True)
    xr = x.detach().clone().requires_grad_()
    xo = x.detach().clone().requires_grad_()
    yr, yo = ref(xr), ours(xo)
    assert yo.dtype == yr.dtype and yo.shape == yr.shape
    assert_close(yo, yr, **tol)
    yr.backward(dy)
    yo.backward(dy)
    assert_close(xo.grad, xr.grad, **tol)
    for (name, pr), (_, po) in zip(ref.named_parameters(), ours.named_parameters()):
        assert_close(po.grad, pr.grad, **tol, msg=f"grad of {name}")
    compare_state(ref, ours, tol)
    return yo, xo.grad


def compare_state(ref, ours, tol):
    sr, so = ref.state_dict(), ours.state_dict()
    assert list(so) == list(sr)
    for k in sr:
        assert so[k].dtype == sr[k].dtype, k
        assert_close(so[k], sr[k], **tol, msg=f"state {k}")


# --- OpInfo samples of nn.functional.batch_norm -----------------------------------------------------

def opinfo_samples(device, dtype):
    """``sample_inputs_batch_norm`` of torch 2.13: (input, rm, rv, weight, bias, kwargs)."""
    S = 5
    arg = dict(device=device, dtype=dtype)
    cases = (((S, S, S), {"training": True, "momentum": 0.5, "eps": 0.6}),
             ((3, 2, 4), {"training": False, "momentum": -1.2}),
             ((3, 1), {"training": True, "momentum": 0.0}),
             ((0,), {"training": True}),
             ((0,), {"training": False}),
             ((3, 2, 3, 4), {"training": True, "momentum": -1.0, "eps": 0.5}),
             ((3, 2, 3, 4), {"training": False, "momentum": -1.0, "eps": 0.5}),
             ((2, 1), {}))
    for shape, kwargs in cases:
        c = shape[1] if len(shape) > 1 else 0
        weight = make_tensor(c, **arg, requires_grad=True) if c > 0 else None
        bias = make_tensor(c, **arg, requires_grad=True) if c > 0 else None
        rm, rv = make_tensor(c, **arg, low=0), make_tensor(c, **arg, low=0)
        yield make_tensor(shape, **arg, requires_grad=True), rm, rv, weight, bias, kwargs
    for training in (True, False, False):
        yield (make_tensor(shape, **arg, requires_grad=True), rm, rv,
               make_tensor(c, **arg, requires_grad=True), make_tensor(c, **arg, requires_grad=True),
               {"training": training})
    yield make_tensor((1, 2, 3), **arg, requires_grad=True), None, None, None, None, {"training": True}


def clone(t):
    return None if t is None else t.detach().clone().requires_grad_(t.requires_grad)


# float32 is compared with F.batch_norm evaluated in float64 on the same values, at float32's
# assert_close tolerances: torch's own float32 kernel is off by 2e-5 on some of these samples (e.g. a
# (2, 1) batch at 7.68 / 7.30), while bncourse keeps float64 per-channel statistics.
F32_VS_FLOAT64 = {"rtol": 1.3e-6, "atol": 1e-5}


def as_float64(t, dtype=None):
    if t is None:
        return None
    return t.detach().to(torch.float64).requires_grad_(t.requires_grad)
