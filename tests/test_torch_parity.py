"""Parity of ``bncourse.torch`` with ``torch.nn.BatchNorm*d`` / ``F.batch_norm``.

The cases are torch's own: ModuleInfo constructor/input combinations (``common_modules.py``) and the
OpInfo samples of ``nn.functional.batch_norm`` (``common_methods_invocations.py``), plus the recipes
of ``test_nn.py`` (channels_last, non-contiguous, empty batch, simple average, buffer flip).

Every test takes the ``device`` fixture: ``cpu`` here; ``tests/test_cuda.py`` imports the same test
functions and overrides the fixture with ``cuda``.
"""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close, make_tensor
from torch.utils._python_dispatch import TorchDispatchMode

import bncourse.torch as bt
from torch_compat import TORCH_HAS_BIAS_KW, needs_bias_kw

torch.set_num_threads(1)

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


@pytest.fixture
def device() -> str:
    return "cpu"


def tols(dtype: torch.dtype) -> dict:
    """float64: ~1e-10 (semantics); others: assert_close's defaults for the dtype."""
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {}


def make_pair(name, args, kwargs, device, dtype, seed=0):
    """A torch.nn module and ours with the same random affine parameters and buffers."""
    ref = TORCH_CLASSES[name](*args, **kwargs, device=device, dtype=dtype)
    ours = OUR_CLASSES[name](*args, **kwargs, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
        if ref.running_var is not None:
            ref.running_mean.copy_(torch.randn(ref.num_features, generator=g, dtype=dtype))
            ref.running_var.copy_(torch.rand(ref.num_features, generator=g, dtype=dtype) + 0.5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


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


# --- ModuleInfo combinations ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_module_cases_match_torch_over_steps(case, training, dtype, device):
    name, _, args, kwargs, shape = case
    ref, ours = make_pair(name, args, kwargs, device, dtype)
    ref.train(training)
    ours.train(training)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = random_batch(shape, device, dtype, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
        step_and_compare(ref, ours, x, dy, tols(dtype))
    if ref.track_running_stats:
        expected_steps = 3 if training else 0
        assert int(ours.num_batches_tracked) == expected_steps


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


def _clone(t):
    return None if t is None else t.detach().clone().requires_grad_(t.requires_grad)


# float32 is compared with F.batch_norm evaluated in float64 on the same values, at float32's
# assert_close tolerances: torch's own float32 kernel is off by 2e-5 on some of these samples (e.g. a
# (2, 1) batch at 7.68 / 7.30), while bncourse keeps float64 per-channel statistics.
_F32 = {"rtol": 1.3e-6, "atol": 1e-5}


def _ref(t, dtype):
    if t is None:
        return None
    return t.detach().to(torch.float64).requires_grad_(t.requires_grad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_opinfo_samples_match_functional(dtype, device):
    torch.manual_seed(0)
    tol = tols(dtype) if dtype == torch.float64 else _F32
    for x, rm, rv, w, b, kwargs in opinfo_samples(device, dtype):
        ref_args = [_ref(t, dtype) for t in (x, rm, rv, w, b)]
        our_args = [_clone(t) for t in (x, rm, rv, w, b)]
        yr = F.batch_norm(*ref_args, **kwargs)
        yo = bt.batch_norm(*our_args, **kwargs)
        assert yo.dtype == dtype and yo.shape == yr.shape
        assert_close(yo.double(), yr, **tol, msg=f"output {tuple(x.shape)} {kwargs}")
        for i in (1, 2):
            if ref_args[i] is not None:
                assert_close(our_args[i].double(), ref_args[i], **tol)
        dy = torch.randn(yr.shape, dtype=dtype, device=device)
        leaves = [i for i in (0, 3, 4) if ref_args[i] is not None]
        gr = torch.autograd.grad(yr, [ref_args[i] for i in leaves], dy.double())
        go = torch.autograd.grad(yo, [our_args[i] for i in leaves], dy)
        for a, e in zip(go, gr):
            assert a.dtype == dtype
            assert_close(a.double(), e, **tol, msg=f"grads {tuple(x.shape)} {kwargs}")


def test_opinfo_samples_match_functional_float32_direct(device):
    """Also straight against torch's float32 kernel, on the samples where it is accurate itself."""
    torch.manual_seed(0)
    for x, rm, rv, w, b, kwargs in opinfo_samples(device, torch.float32):
        args64 = [_ref(t, None) for t in (x, rm, rv, w, b)]
        exact = F.batch_norm(*args64, **kwargs)
        yr = F.batch_norm(*[_clone(t) for t in (x, rm, rv, w, b)], **kwargs)
        if not torch.allclose(yr.double(), exact, **_F32):
            continue   # torch's float32 result is the outlier here (see above)
        yo = bt.batch_norm(*[_clone(t) for t in (x, rm, rv, w, b)], **kwargs)
        assert_close(yo, yr)


# --- memory formats, strides, dtypes --------------------------------------------------------------

def run_module(m, x, dy):
    """Forward + backward; returns (output, dx, *param grads, *running buffers)."""
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    y = m(x)
    y.backward(dy)
    bufs = [b for b in (m.running_mean, m.running_var) if b is not None]
    return [y.detach(), x.grad] + [p.grad for p in m.parameters()] + [b.clone() for b in bufs]


def exact_results(ref, x, dy):
    """torch.nn in float64 on the same (already rounded) values and parameters: the ground truth."""
    m64 = copy.deepcopy(ref).double()
    return run_module(m64, x.double(), dy.double())


def assert_reduced_precision_ok(ours, ref_results, exact, dtype):
    """float16/bfloat16 everywhere: torch's kernel rounds intermediates (its pure-bf16 dgamma is off
    by 0.2 where bncourse's is off by 0.04), so instead of comparing the two directly, require
    bncourse to be within one unit of the dtype's epsilon of the exact result (relative, plus the
    same at the tensor's scale for entries that cancel) and never worse than torch."""
    eps = torch.finfo(dtype).eps
    for o, t, e in zip(ours, ref_results, exact):
        scale = e.abs().max()
        err = (o.double() - e).abs()
        assert torch.all(err <= eps * (e.abs() + scale)), (err.max(), scale)
        assert err.max() <= (t.double() - e).abs().max() + eps * scale


@pytest.mark.parametrize("shape", [(4, 8, 10, 10), (4, 1, 9, 9), (4, 9, 1, 1), (2, 3, 2, 4, 5)])
@pytest.mark.parametrize("mode", ["float", "bf16", "bf16_mixed"])
def test_channels_last_matches_torch_and_is_kept(shape, mode, device):
    """test_batchnorm_nhwc_cpu: channels_last forward and backward; output/grad stay channels_last."""
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    xdtype = torch.float32 if mode == "float" else torch.bfloat16
    pdtype = torch.bfloat16 if mode == "bf16" else torch.float32
    name = "BatchNorm2d" if len(shape) == 4 else "BatchNorm3d"
    ref, ours = make_pair(name, (shape[1],), {}, device, pdtype)
    ours_contiguous = copy.deepcopy(ours)
    g = torch.Generator().manual_seed(2)
    x = random_batch(shape, device, xdtype, g, memory_format=fmt)
    dy = torch.randn(shape, generator=g).to(device, xdtype).contiguous(memory_format=fmt)
    if mode == "bf16":
        exact = exact_results(ref, x, dy)
        got = run_module(ours, x, dy)
        assert_reduced_precision_ok(got, run_module(ref, x, dy), exact, torch.bfloat16)
        y, dx = got[:2]
    else:
        y, dx = step_and_compare(ref, ours, x, dy, {} if mode == "float" else _HALF_TOL[xdtype])
    assert y.is_contiguous(memory_format=fmt)
    assert dx.is_contiguous(memory_format=fmt)
    # the same numbers (up to summation order) from a contiguous copy of the input
    y2, dx2 = run_module(ours_contiguous, x.contiguous(), dy.contiguous())[:2]
    assert y2.is_contiguous() and dx2.is_contiguous()
    assert_close(y2, y)
    assert_close(dx2, dx)


def test_non_contiguous_input_eval(device):
    """test_batchnorm_non_contig_cpu."""
    x = torch.arange(6, dtype=torch.float).reshape(1, 3, 2, 1).permute(0, 2, 1, 3).to(device)
    ref, ours = make_pair("BatchNorm2d", (2,), {}, device, torch.float32)
    ref.eval()
    ours.eval()
    assert not x.is_contiguous()
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("training", [True, False])
def test_non_contiguous_input_with_grads(training, device):
    g = torch.Generator().manual_seed(3)
    base = random_batch((6, 5, 4, 7), device, torch.float64, g)
    x = base.transpose(2, 3)[:, :, ::2]          # (6, 5, 4, 4) with odd strides
    assert not x.is_contiguous()
    ref, ours = make_pair("BatchNorm2d", (5,), {}, device, torch.float64)
    ref.train(training)
    ours.train(training)
    dy = torch.randn(x.shape, generator=g, dtype=torch.float64).to(device).transpose(0, 1)
    step_and_compare(ref, ours, x, dy.transpose(0, 1), tols(torch.float64))


# Reduced-precision outputs are rounded once from float32 results that agree to ~1e-6; a tolerance of
# one unit in the last place of the dtype (2**-10 for half, 2**-7 for bfloat16) is the honest bound.
_HALF_TOL = {torch.float16: {"rtol": 2 ** -10, "atol": 2 ** -10},
             torch.bfloat16: {"rtol": 2 ** -7, "atol": 2 ** -7}}


@pytest.mark.parametrize("xdtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("params", ["float32", "same"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_reduced_precision_input(xdtype, params, training, device):
    """Half/bf16 input: computed in float32, output and dx in the input dtype, parameters, their
    grads and the buffers keep their own dtype. float32 parameters (torch's mixed path) are
    compared with torch directly for output and dx; everything (parameter grads and buffers too)
    is checked against the float64 truth and must be no worse than torch (cuDNN's float32
    parameter grads from half input are off by ~4e-3 relative)."""
    pdtype = torch.float32 if params == "float32" else xdtype
    ref, ours = make_pair("BatchNorm2d", (3,), {}, device, pdtype)
    ref.train(training)
    ours.train(training)
    g = torch.Generator().manual_seed(4)
    for _ in range(2):
        x = random_batch((4, 3, 6, 6), device, xdtype, g)
        dy = torch.randn(x.shape, generator=g).to(device, xdtype)
        exact = exact_results(ref, x, dy)
        got, expected = run_module(ours, x, dy), run_module(ref, x, dy)
        assert [t.dtype for t in got] == [t.dtype for t in expected]
        assert got[0].dtype == got[1].dtype == xdtype
        assert ours.running_var.dtype == pdtype
        assert_reduced_precision_ok(got, expected, exact, xdtype)
        if params == "float32":   # torch's mixed path: output and dx also directly at 1 ulp
            assert_close(got[0], expected[0], **_HALF_TOL[xdtype])
            assert_close(got[1], expected[1], **_HALF_TOL[xdtype])


# --- recipes from test_nn.py ----------------------------------------------------------------------

def test_batchnorm_empty(device):
    """test_BatchNorm_empty: (0,3,2,2) double; stats unchanged; nbt+1; weight/bias grads are zeros."""
    ref, ours = make_pair("BatchNorm2d", (3,), {}, device, torch.float64)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = torch.randn(0, 3, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    y = ours(x)
    assert y.shape == x.shape and y.grad_fn is not None
    y.sum().backward()
    assert torch.equal(ours.weight.grad, torch.zeros_like(ours.weight))
    assert torch.equal(ours.bias.grad, torch.zeros_like(ours.bias))
    assert x.grad.shape == x.shape
    assert torch.equal(ours.running_mean, before["running_mean"])
    assert torch.equal(ours.running_var, before["running_var"])
    assert int(ours.num_batches_tracked) == 1
    ref(x.detach())
    compare_state(ref, ours, tols(torch.float64))


def test_update_stats_train_changes_eval_does_not(device):
    """test_batchnorm_update_stats."""
    m = bt.BatchNorm1d(3, device=device)
    x = torch.rand(4, 3, device=device)
    rm, rv = m.running_mean.clone(), m.running_var.clone()
    m(x)
    assert not torch.equal(rm, m.running_mean) and not torch.equal(rv, m.running_var)
    assert int(m.num_batches_tracked) == 1
    assert_close(m.running_mean, 0.9 * rm + 0.1 * x.mean(0))
    assert_close(m.running_var, 0.9 * rv + 0.1 * x.var(0, unbiased=True))
    m.eval()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    m(x)
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_simple_average(dtype, device):
    """test_batchnorm_simple_average: momentum=None is the cumulative average of the batch stats."""
    m = bt.BatchNorm1d(10, momentum=None, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(5)
    data1 = torch.rand(4, 10, generator=g).to(device, dtype)
    data2 = torch.rand(4, 10, generator=g).to(device, dtype)
    m(data1)
    mean1, var1 = m.running_mean.clone(), m.running_var.clone()
    m.reset_running_stats()
    m(data2)
    mean2, var2 = m.running_mean.clone(), m.running_var.clone()
    m.reset_running_stats()
    m(data1)
    m(data2)
    assert int(m.num_batches_tracked) == 2
    assert_close(m.running_mean, (mean1 + mean2) / 2)
    assert_close(m.running_var, (var1 + var2) / 2)
    # and the first batch discards the initial mean 0 / var 1 entirely
    assert_close(mean1, data1.float().mean(0).to(dtype))


def test_buffer_flip_track_running_stats(device):
    """test_batchnorm_buffer_update_when_stats_are_not_tracked: flip the attribute after construction."""
    ref, ours = make_pair("BatchNorm1d", (4,), {}, device, torch.float64)
    g = torch.Generator().manual_seed(6)
    for m in (ref, ours):
        m.track_running_stats = False
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = random_batch((32, 4), device, torch.float64, g)
    dy = torch.randn(32, 4, generator=g, dtype=torch.float64).to(device)
    step_and_compare(ref, ours, x, dy, tols(torch.float64))
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), k   # batch stats, no update, nbt frozen
    ref.eval()
    ours.eval()                                # eval uses the stale buffers
    step_and_compare(ref, ours, x, dy, tols(torch.float64))


def test_eval_without_running_stats_uses_batch_stats(device):
    ref, ours = make_pair("BatchNorm1d", (3, 1e-5, 0.1, True, False), {}, device, torch.float64)
    ref.eval()
    ours.eval()
    x = random_batch((5, 3), device, torch.float64, torch.Generator().manual_seed(7))
    y = ours(x)
    assert_close(y, ref(x), **tols(torch.float64))
    xhat = (y - ours.bias.detach()) / ours.weight.detach()
    assert_close(xhat.mean(0), torch.zeros(3, dtype=torch.float64, device=device), rtol=0, atol=1e-12)


# --- state_dict, pickling, conversion -------------------------------------------------------------

@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_state_dict_both_ways(case, device):
    name, _, args, kwargs, _ = case
    ref, ours = make_pair(name, args, kwargs, device, torch.float32, seed=8)
    fresh_ref = TORCH_CLASSES[name](*args, **kwargs, device=device)
    fresh_ours = OUR_CLASSES[name](*args, **kwargs, device=device)
    fresh_ours.load_state_dict(ref.state_dict())       # torch.nn -> ours
    fresh_ref.load_state_dict(ours.state_dict())       # ours -> torch.nn
    compare_state(ref, fresh_ours, {"rtol": 0, "atol": 0})
    compare_state(fresh_ref, ours, {"rtol": 0, "atol": 0})
    assert ours.state_dict()._metadata[""]["version"] == 2 == ref.state_dict()._metadata[""]["version"]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]


def test_old_checkpoint_without_num_batches_tracked(device):
    ref, _ = make_pair("BatchNorm2d", (3,), {}, device, torch.float32)
    sd = ref.state_dict()
    del sd["num_batches_tracked"]
    sd._metadata[""]["version"] = 1
    ours = bt.BatchNorm2d(3, device=device)
    ours.num_batches_tracked.fill_(5)
    ours.load_state_dict(sd)                     # strict: missing key defaulted like torch
    assert int(ours.num_batches_tracked) == 5    # torch keeps the module's own counter
    assert torch.equal(ours.running_mean, ref.running_mean)
    torch_side = nn.BatchNorm2d(3, device=device)
    torch_side.num_batches_tracked.fill_(5)
    torch_side.load_state_dict(sd)
    assert int(torch_side.num_batches_tracked) == 5
    sd_v2 = ref.state_dict()
    del sd_v2["num_batches_tracked"]             # version 2 without the key is an error in both
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        bt.BatchNorm2d(3, device=device).load_state_dict(sd_v2)
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        nn.BatchNorm2d(3, device=device).load_state_dict(sd_v2)


@needs_bias_kw
def test_constructor_and_repr_match_torch(device):
    for args, kwargs in (((3,), {}), ((3, 1e-3, None, False), {}), ((3,), {"bias": False}),
                         ((3, 1e-5, 0.1, True, False), {})):
        ref, ours = nn.BatchNorm2d(*args, **kwargs), bt.BatchNorm2d(*args, **kwargs)
        assert ours.extra_repr() == ref.extra_repr()
        for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
            assert getattr(ours, attr) == getattr(ref, attr)
    assert repr(bt.BatchNorm2d(3)) == (
        "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)")
    m = bt.BatchNorm3d(4, device=device, dtype=torch.float64)
    assert m.weight.dtype == m.running_var.dtype == torch.float64
    assert m.num_batches_tracked.dtype == torch.long and m.num_batches_tracked.dim() == 0
    assert torch.equal(m.weight, torch.ones(4, dtype=torch.float64, device=device))
    with torch.no_grad():
        m.weight.mul_(3)
        m.running_mean.add_(1)
    m.num_batches_tracked.add_(2)
    m.reset_parameters()
    assert torch.equal(m.weight, torch.ones_like(m.weight))
    assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
    assert int(m.num_batches_tracked) == 0


def test_pickle_and_deepcopy_roundtrip(device):
    ref, ours = make_pair("BatchNorm2d", (3,), {}, device, torch.float32)
    x = random_batch((2, 3, 4, 4), device, torch.float32, torch.Generator().manual_seed(9))
    ours(x)
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    clones = [copy.deepcopy(ours), pickle.loads(pickle.dumps(ours)),
              torch.load(buf, weights_only=False)]
    for c in clones:
        assert type(c) is bt.BatchNorm2d
        compare_state(ours, c, {"rtol": 0, "atol": 0})
        c.eval()
    ours.eval()
    for c in clones:
        assert_close(c(x), ours(x), rtol=0, atol=0)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Sequential(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6, momentum=None)))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 6 * 6, 8),
                                  nn.BatchNorm1d(8, affine=False), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.features(x))


def test_convert_batchnorm_on_small_cnn(device):
    torch.manual_seed(10)
    ref = SmallCNN().to(device)
    ref.features[1].weight.requires_grad_(False)
    ref.features[3][1].eval()
    x = torch.randn(5, 1, 8, 8, device=device)
    ref(x)                                          # non-default buffers and parameters
    ref.features[3][1].eval()
    model = convert_copy = bt.convert_batchnorm(copy.deepcopy(ref))
    kinds = [type(m) for m in model.modules()]
    assert bt.BatchNorm2d in kinds and bt.BatchNorm1d in kinds
    assert not any(t in kinds for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
    assert list(model.state_dict()) == list(ref.state_dict())
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b) and a.device == b.device and a.dtype == b.dtype, k
    assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in ref.parameters()]
    assert [m.training for m in model.modules()] == [m.training for m in ref.modules()]
    assert model.features[3][1].momentum is None
    for step in range(2):
        yr, yo = ref(x), convert_copy(x)
        assert_close(yo, yr)
        yr.sum().backward()
        yo.sum().backward()
        for (k, pr), (_, po) in zip(ref.named_parameters(), model.named_parameters()):
            if pr.requires_grad:
                assert_close(po.grad, pr.grad, msg=k)
        for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
            assert_close(a, b, msg=k)
    ref.eval()
    model.eval()
    assert_close(model(x), ref(x))


@needs_bias_kw
def test_convert_batchnorm_root_and_shared_tensors(device):
    bn = nn.BatchNorm3d(2, eps=1e-3, momentum=0.3, bias=False, device=device, dtype=torch.float64)
    bn.eval()
    new = bt.convert_batchnorm(bn)
    assert type(new) is bt.BatchNorm3d and not new.training
    assert new.weight is bn.weight and new.bias is None
    assert new.running_mean is bn.running_mean
    assert (new.eps, new.momentum) == (1e-3, 0.3)
    assert new.extra_repr() == bn.extra_repr()


# --- numerics and "no native kernel" --------------------------------------------------------------

def test_large_offset_small_std_float32_variance(device):
    """float32 data at offset 1e4 with std 1e-2: batch variance within 1e-3 relative of float64."""
    g = torch.Generator().manual_seed(11)
    x = (1e4 + 1e-2 * torch.randn(256, 3, 8, generator=g)).to(device)
    m = bt.BatchNorm1d(3, momentum=1.0, device=device)
    y = m(x)
    x64 = x.double()
    expected = x64.var(dim=(0, 2), unbiased=True)
    assert torch.all(((m.running_var.double() - expected) / expected).abs() < 1e-3)
    assert_close(m.running_mean.double(), x64.mean(dim=(0, 2)), rtol=1e-7, atol=0)
    y64 = (x64 - x64.mean((0, 2), keepdim=True)) / (x64.var((0, 2), unbiased=False, keepdim=True)
                                                     + 1e-5).sqrt()
    assert_close(y.double(), y64, rtol=0, atol=2e-3)


def test_constant_channel_gives_bias_not_nan(device):
    m = bt.BatchNorm2d(2, device=device)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.25, -1.5]))
    x = torch.full((3, 2, 4, 4), 7.0, device=device, requires_grad=True)
    y = m(x)
    assert torch.equal(y, m.bias.detach().view(1, 2, 1, 1).expand_as(y))
    y.backward(torch.randn_like(y))
    assert torch.isfinite(x.grad).all() and torch.isfinite(m.weight.grad).all()
    assert torch.equal(m.running_var, torch.full((2,), 0.9, device=device))


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("training", [True, False])
def test_no_native_batch_norm_on_the_compute_path(training, device):
    m = bt.BatchNorm2d(3, device=device).train(training)
    x = torch.randn(4, 3, 5, 5, device=device, requires_grad=True)
    with _OpRecorder() as rec:
        y = m(x)
        y.backward(torch.randn_like(y))
    assert rec.ops, "the recorder saw nothing"
    assert not [op for op in rec.ops if "norm" in op], rec.ops
    assert "mm" in rec.ops or device != "cpu"
