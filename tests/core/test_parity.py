"""Every backend against torch.nn: ``bncourse.numpy``, ``bncourse.torch`` on CPU and on CUDA.

The cases are torch's own (``cases.py``): each ModuleInfo constructor/input combination runs
several steps in training, in evaluation, and switching between the two, comparing the output,
dx, dweight, dbias, the running statistics and ``num_batches_tracked`` after every step; each
OpInfo sample of ``nn.functional.batch_norm`` compares the functional form (NumPy: with the
compact and the staged backward). float64 is compared at 1e-10; float32 at ``assert_close``'s
defaults (modules, against torch.nn in float32) or against ``F.batch_norm`` in float64
(functional, where torch's own float32 kernel is the outlier on some samples).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from cases import (F32_VS_FLOAT64, MODULE_CASES, MODULE_IDS, as_float64, clone, opinfo_samples,
                   random_batch, reference_module, tols)

torch.set_num_threads(1)

MODES = {"train": [True] * 3, "eval": [False] * 3, "switch": [True, True, False, False, True]}


def _same(got, want, tol, what):
    if want is None:
        assert got is None, f"{what}: torch has None, ours {got!r}"
        return
    assert got is not None, f"{what}: ours is None, torch has a value"
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert_close(got.to(want.device), want, **tol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_module_cases_match_torch_over_steps(case, mode, dtype, backend):
    name, _, args, kwargs, shape = case
    ref = reference_module(name, args, kwargs, backend.device, dtype)
    ours = backend.module(name, args, kwargs, dtype)
    backend.load_state(ours, ref.state_dict())
    g = torch.Generator().manual_seed(1)
    tol = tols(dtype)
    for step, training in enumerate(MODES[mode]):
        x = random_batch(shape, backend.device, dtype, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(backend.device, dtype)
        ref.train(training)
        ref.zero_grad(set_to_none=True)
        xr = x.detach().clone().requires_grad_()
        yr = ref(xr)
        yr.backward(dy)
        want = (yr.detach(), xr.grad, None if ref.weight is None else ref.weight.grad,
                None if ref.bias is None else ref.bias.grad)
        for what, got, exp in zip(("y", "dx", "dweight", "dbias"), backend.step(ours, x, dy, training),
                                  want):
            _same(got, exp, tol, f"{what} at step {step} ({'train' if training else 'eval'})")
        state, ref_state = backend.state(ours), ref.state_dict()
        assert list(state) == list(ref_state)
        for k in ref_state:
            _same(state[k], ref_state[k], tol, f"{k} at step {step}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_opinfo_samples_match_functional(dtype, backend):
    torch.manual_seed(0)
    tol = tols(dtype) if dtype == torch.float64 else F32_VS_FLOAT64
    checked = 0
    for x, rm, rv, w, b, kwargs in opinfo_samples(backend.device, dtype):
        if x.dim() < backend.min_rank:
            continue
        ref_args = [as_float64(t) for t in (x, rm, rv, w, b)]
        our_args = [clone(t) for t in (x, rm, rv, w, b)]
        yr = F.batch_norm(*ref_args, **kwargs)
        dy = torch.randn(yr.shape, dtype=dtype, device=backend.device)
        leaves = [ref_args[i] for i in (0, 3, 4)]
        grads = iter(torch.autograd.grad(yr, [t for t in leaves if t is not None], dy.double()))
        want = [yr.detach()] + [None if t is None else next(grads) for t in leaves]
        for result in backend.functional(*our_args, dy, kwargs):
            for what, got, exp in zip(("y", "dx", "dweight", "dbias"), result, want):
                if exp is None:
                    assert got is None, what
                    continue
                assert got.dtype == dtype, what
                assert_close(got.double().to(exp.device), exp, **tol,
                             msg=lambda m: f"{what} {tuple(x.shape)} {kwargs}: {m}")
        for i in (1, 2):
            if ref_args[i] is not None:
                assert_close(our_args[i].double(), ref_args[i], **tol)
        checked += 1
    assert checked >= (11 if backend.min_rank == 0 else 9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 4), (2, 3, 2, 3, 2)])
def test_functional_training_steps_update_buffers_like_torch(shape, dtype, backend):
    """Five consecutive training calls of the functional form share the buffers."""
    g = torch.Generator().manual_seed(3)
    c = shape[1]
    rm = torch.zeros(c, dtype=dtype, device=backend.device)
    rv = torch.ones(c, dtype=dtype, device=backend.device)
    trm, trv = rm.clone(), rv.clone()
    for _ in range(5):
        x = random_batch(shape, backend.device, dtype, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(backend.device, dtype)
        (y, *_), *_ = backend.functional(x, rm, rv, None, None, dy, {"training": True, "momentum": 0.25})
        ty = F.batch_norm(x, trm, trv, training=True, momentum=0.25)
        _same(y, ty, tols(dtype), "y")
        _same(rm, trm, tols(dtype), "running_mean")
        _same(rv, trv, tols(dtype), "running_var")
