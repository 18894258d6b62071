"""Parity of the normalization family with torch.nn: LayerNorm, GroupNorm, InstanceNorm1d/2d/3d, RMSNorm.

The cases are torch's own ModuleInfo constructor/input combinations for these layers
(``torch/testing/_internal/common_modules.py``, torch 2.13: ``module_inputs_torch_nn_LayerNorm``,
``..._GroupNorm``, ``..._InstanceNormNd``, ``..._RMSNorm``), transcribed so that collecting them costs
nothing; one test reads the installed torch's ``module_db`` and checks the transcription against it.
Every case runs in training and evaluation over several steps against ``torch.nn`` (outputs, input
and parameter gradients, buffers), through ``torch.autograd.gradcheck``/``gradgradcheck``, and
three-way with the NumPy layers; on CUDA too when a device is present (skipped otherwise). Error
types and messages are compared with torch's actual ``str(exc)``.
"""
from __future__ import annotations

import copy
import inspect
import io
import json
import pickle
import re
import subprocess
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import bncourse.numpy as bnp
import bncourse.torch as bt

torch.set_num_threads(1)

NAMES = ["LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm"]
TORCH = {n: getattr(nn, n) for n in NAMES}
OURS = {n: getattr(bt, n) for n in NAMES}


def _module_cases():
    """(class, desc, ctor args, ctor kwargs, input shape), from torch 2.13's ModuleInfo."""
    cases = []
    for name in ("LayerNorm", "RMSNorm"):
        cases += [
            (name, "1d_elementwise_affine", ([5], 1e-3), {}, (4, 5, 5)),
            (name, "1d_elementwise_affine_large_batch", ([5], 1e-3), {}, (128, 5, 5)),
            (name, "1d_no_elementwise_affine", ([5], 1e-3, False), {}, (4, 5, 5)),
            (name, "3d_elementwise_affine", ([2, 2, 5], 1e-3), {}, (4, 2, 2, 5)),
            (name, "3d_no_elementwise_affine", ([2, 2, 5], 1e-3, False), {}, (4, 2, 2, 5)),
            (name, "1d_empty_elementwise_affine", ([5], 1e-3), {}, (0, 5)),
        ]
    cases.append(("LayerNorm", "3d_elementwise_affine_no_bias", ([2, 2, 5], 1e-3),
                  {"elementwise_affine": True, "bias": False}, (4, 2, 2, 5)))
    cases += [
        ("GroupNorm", "1d_affine", (3, 6, 1e-3), {}, (4, 6, 5)),
        ("GroupNorm", "1d_affine_not_bias", (3, 6, 1e-3), {"bias": False}, (4, 6, 5)),
        ("GroupNorm", "1d_affine_GN", (3, 12, 1e-3), {}, (4, 12)),
        ("GroupNorm", "1d_affine_large_batch", (1, 6, 1e-3), {}, (150, 6)),
        ("GroupNorm", "1d_no_affine_IN", (5, 5, 1e-3, False), {}, (4, 5, 5)),
        ("GroupNorm", "1d_no_affine_LN", (1, 10, 1e-3, False), {}, (4, 10)),
        ("GroupNorm", "2d_affine", (3, 6, 1e-3), {}, (4, 6, 2, 3)),
        ("GroupNorm", "2d_affine_not_bias", (3, 9, 1e-3), {"bias": False}, (4, 9, 2, 3)),
        ("GroupNorm", "2d_no_affine_IN", (3, 3, 1e-3, False), {}, (4, 3, 2, 3)),
        ("GroupNorm", "2d_no_affine_LN", (1, 3, 1e-3, False), {}, (4, 3, 2, 3)),
    ]
    no_batch = {1: (3, 15), 2: (3, 6, 6), 3: (3, 4, 4, 4)}
    for n, shape in no_batch.items():
        name, batch = f"InstanceNorm{n}d", (4,) + shape
        cases += [
            (name, "default", (3, 1e-3, 0.3), {}, batch),
            (name, "tracking_stats", (3, 1e-3, 0.3, False, True), {}, batch),
            (name, "tracking_stats_no_batch_dim", (3, 1e-3, 0.3), {}, shape),
            (name, "no_batch_dim", (3, 1e-3, 0.3, False, True), {}, shape),
            (name, "affine", (3, 1e-3, 0.3), {"affine": True}, batch),
            (name, "affine_not_bias", (3, 1e-3, 0.3), {"affine": True, "bias": False}, batch),
        ]
    return cases


MODULE_CASES = _module_cases()

# Reads torch's own ModuleInfo entries in a separate interpreter: common_modules imports expecttest
# only for a TestCase base class, so a stand-in module lets it load where expecttest is absent.
_MODULE_DB_SCRIPT = """
import json, sys, types, unittest
try:
    import expecttest  # noqa: F401
except ImportError:
    stub = types.ModuleType("expecttest"); stub.TestCase = unittest.TestCase
    sys.modules["expecttest"] = stub
import torch
from torch.testing._internal.common_modules import module_db
names = {"LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm"}
cases = []
for info in module_db:
    if info.module_cls.__name__ in names and info.module_cls.__module__.startswith("torch.nn"):
        for mi in info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                          requires_grad=False, training=True):
            cases.append([info.module_cls.__name__, list(mi.constructor_input.args),
                          mi.constructor_input.kwargs, list(mi.forward_input.args[0].shape)])
print(json.dumps(cases))
"""


def test_transcribed_cases_are_torchs_module_db():
    """The cases above are exactly torch's ModuleInfo cases for these layers (same constructor
    arguments and input shapes, same count), read from the installed torch."""
    run = subprocess.run([sys.executable, "-c", _MODULE_DB_SCRIPT], capture_output=True, text=True,
                         timeout=300)
    if run.returncode != 0:
        pytest.skip(f"torch's module_db does not load here: {run.stderr.strip().splitlines()[-1:]}")
    theirs = sorted(json.dumps(c) for c in json.loads(run.stdout))
    ours = sorted(json.dumps([n, list(a), k, list(shape)]) for n, _, a, k, shape in MODULE_CASES)
    assert ours == theirs


MODULE_IDS = [f"{c[0]}-{c[1]}" for c in MODULE_CASES]
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


def tols(dtype: torch.dtype) -> dict:
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {}


def make_pair(name, args, kwargs, device, dtype, seed=0):
    """torch.nn's module and ours, with the same random parameters and running statistics."""
    ref = TORCH[name](*args, **kwargs, device=device, dtype=dtype)
    ours = OURS[name](*args, **kwargs, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        if getattr(ref, "running_var", None) is not None:
            ref.running_mean.copy_(torch.randn(ref.num_features, generator=g, dtype=torch.float64))
            ref.running_var.copy_(torch.rand(ref.num_features, generator=g, dtype=torch.float64) + 0.5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def random_input(shape, device, dtype, g):
    """Random values with an offset and a scale per position, so the statistics are not trivial."""
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2.5 + 1.5
    return x.to(device=device, dtype=dtype)


def compare_state(ref, ours, tol):
    sr, so = ref.state_dict(), ours.state_dict()
    assert list(so) == list(sr)
    for k in sr:
        assert so[k].dtype == sr[k].dtype, k
        assert_close(so[k], sr[k], **tol, msg=f"state {k}")


# --- ModuleInfo cases: outputs, gradients, buffers over steps ------------------------------------

# float32 is compared with torch.nn evaluated in float64 on the same values, at float32's assert_close
# tolerances: a parameter gradient sums hundreds of float32 products and torch's own float32 kernel is
# off by ~1e-5 there (e.g. LayerNorm's large-batch case), as far from the float64 value as ours is.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_module_cases_match_torch_over_steps(case, training, dtype, device):
    name, _, args, kwargs, shape = case
    ref_dtype, ours = make_pair(name, args, kwargs, device, dtype)
    ref = copy.deepcopy(ref_dtype).double()              # the values' reference
    for m in (ref_dtype, ref, ours):
        m.train(training)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = random_input(shape, device, dtype, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
        for m in (ref, ours):
            m.zero_grad(set_to_none=True)
        xr, xo = x.detach().double().clone().requires_grad_(), x.detach().clone().requires_grad_()
        yr, yo = ref(xr), ours(xo)
        y_dtype = ref_dtype(x)
        assert yo.dtype == y_dtype.dtype and yo.shape == y_dtype.shape and yo.device == y_dtype.device
        assert_close(yo, yr.to(dtype), **tols(dtype))
        yr.backward(dy.double())
        yo.backward(dy)
        assert_close(xo.grad, xr.grad.to(dtype), **tols(dtype))
        for (pname, pr), (_, po) in zip(ref.named_parameters(), ours.named_parameters()):
            assert_close(po.grad, pr.grad.to(dtype), **tols(dtype), msg=f"grad of {pname}")
        compare_state(ref_dtype, ours, tols(dtype))


# --- gradcheck / gradgradcheck on the same cases -----------------------------------------------

GRAD_CASES = [c for c in MODULE_CASES if 0 < np.prod(c[4]) <= 200]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", GRAD_CASES, ids=[f"{c[0]}-{c[1]}" for c in GRAD_CASES])
def test_gradcheck_and_gradgradcheck(case, training):
    name, _, args, kwargs, shape = case
    _, ours = make_pair(name, args, kwargs, "cpu", torch.float64)
    ours.train(training)
    names = [n for n, _ in ours.named_parameters()]
    g = torch.Generator().manual_seed(2)
    x = random_input(shape, "cpu", torch.float64, g).requires_grad_()
    params = [p.detach().clone().requires_grad_() for _, p in ours.named_parameters()]
    buffers = {n: b for n, b in ours.named_buffers()}

    def f(x, *ps):
        state = dict(zip(names, ps))
        state.update({n: b.clone() for n, b in buffers.items()})   # fresh buffers per call
        return functional_call(ours, state, (x,))

    assert gradcheck(f, (x, *params))
    assert gradgradcheck(f, (x, *params))


def test_double_backward_matches_torch():
    """Hessian-vector products through torch.nn's native double backward and ours agree."""
    g = torch.Generator().manual_seed(3)
    for name, args, shape in (("LayerNorm", ([5],), (4, 3, 5)), ("GroupNorm", (2, 4), (3, 4, 5)),
                              ("InstanceNorm1d", (4, 1e-5, 0.1, True), (3, 4, 5)),
                              ("RMSNorm", ([5],), (4, 3, 5))):
        ref, ours = make_pair(name, args, {}, "cpu", torch.float64)
        x = random_input(shape, "cpu", torch.float64, g).requires_grad_()
        v = torch.randn(shape, generator=g, dtype=torch.float64)
        results = []
        for m in (ref, ours):
            gx, gw = torch.autograd.grad((m(x) ** 2).sum(), (x, m.weight), create_graph=True)
            results.append(torch.autograd.grad((gx * v).sum() + gw.sum(), (x, m.weight)))
        for a, b in zip(results[1], results[0]):
            assert_close(a, b, rtol=1e-9, atol=1e-9)


# --- three-way with the NumPy layers ------------------------------------------------------------

def numpy_twin(name, args, kwargs, dtype=np.float64):
    cls = {"LayerNorm": bnp.LayerNorm, "GroupNorm": bnp.GroupNorm, "RMSNorm": bnp.RMSNorm}.get(
        name, bnp.InstanceNorm)
    return cls(*args, **kwargs, dtype=dtype)


NUMPY_CASES = [c for c in MODULE_CASES if not c[1].endswith("no_batch_dim")]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", NUMPY_CASES, ids=[f"{c[0]}-{c[1]}" for c in NUMPY_CASES])
def test_numpy_layers_match_torch(case, training):
    name, _, args, kwargs, shape = case
    ref, _ = make_pair(name, args, kwargs, "cpu", torch.float64)
    twin = numpy_twin(name, args, kwargs)
    twin.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    ref.train(training)
    twin.train(training)
    g = torch.Generator().manual_seed(4)
    for step in range(3):
        x = random_input(shape, "cpu", torch.float64, g).requires_grad_()
        dy = torch.randn(shape, generator=g, dtype=torch.float64)
        ref.zero_grad(set_to_none=True)
        y = ref(x)
        y.backward(dy)
        y_np = twin.forward(x.detach().numpy().copy())
        dx_np = twin.backward(dy.numpy().copy())
        assert_close(torch.from_numpy(y_np), y.detach(), **tols(torch.float64), msg=f"y step {step}")
        assert_close(torch.from_numpy(dx_np), x.grad, **tols(torch.float64), msg=f"dx step {step}")
        for pname, grad in (("weight", twin.grad_weight), ("bias", twin.grad_bias)):
            p = getattr(ref, pname, None)
            assert (grad is None) == (p is None), pname
            if p is not None:
                assert_close(torch.from_numpy(grad), p.grad, **tols(torch.float64))
        sd = twin.state_dict()
        assert list(sd) == list(ref.state_dict())
        for k, v in ref.state_dict().items():
            assert_close(torch.from_numpy(np.asarray(sd[k])), v, **tols(torch.float64), msg=k)


@pytest.mark.parametrize("layer", [
    lambda: bnp.LayerNorm([3, 4], dtype=np.float64),
    lambda: bnp.GroupNorm(2, 4, dtype=np.float64),
    lambda: bnp.InstanceNorm(4, affine=True, dtype=np.float64),
    lambda: bnp.RMSNorm(4, dtype=np.float64),
], ids=["LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm"])
def test_numpy_backward_matches_finite_differences(layer):
    m = layer()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 3, 4)) * 2 + 1
    for p in (m.weight, m.bias):
        if p is not None:
            p[...] = rng.standard_normal(p.shape)
    gy = rng.standard_normal(x.shape)
    loss = lambda: float(np.sum(m.forward(x) * gy))  # noqa: E731
    m.forward(x)
    dx = m.backward(gy)
    reports = [bnp.check_gradient(dx, bnp.numerical_gradient(loss, x), name="x")]
    for pname, grad in (("weight", m.grad_weight), ("bias", m.grad_bias)):
        if grad is not None:
            reports.append(bnp.check_gradient(grad, bnp.numerical_gradient(loss, getattr(m, pname)),
                                              name=pname))
    assert all(r.passed for r in reports), [str(r) for r in reports]


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")   # torch's rms_norm
@pytest.mark.parametrize("xdtype", [np.float16, np.float32], ids=["half", "float"])
@pytest.mark.parametrize("name, args", [("LayerNorm", ([8],)), ("GroupNorm", (2, 6)),
                                        ("InstanceNorm1d", (6, 1e-5, 0.1, True)), ("RMSNorm", ([8],))])
def test_numpy_layers_float16_and_float32(name, args, xdtype):
    """float32 parameters; float16 input computed in float32 (torch's mixed path): the input's dtype
    for y and dx (within 1 ulp of torch's), float32 for the parameter gradients, which are checked
    against the float64 truth: torch's own float16 LayerNorm weight gradient is 2e-3 off it."""
    ref, _ = make_pair(name, args, {}, "cpu", torch.float32)
    twin = numpy_twin(name, args, {}, dtype=np.float32)
    twin.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((4, 6, 8)) * 2 + 1).astype(xdtype)
    dy = rng.standard_normal(x.shape).astype(xdtype)
    xt = torch.from_numpy(x).requires_grad_()
    y_t = ref(xt)
    y_t.backward(torch.from_numpy(dy))
    y, dx = twin.forward(x), twin.backward(dy)
    assert y.dtype == dx.dtype == xdtype and twin.grad_weight.dtype == np.float32
    tol = {"rtol": 2 ** -10, "atol": 2 ** -10} if xdtype == np.float16 else {}
    assert_close(torch.from_numpy(y), y_t.detach(), **tol)
    assert_close(torch.from_numpy(dx), xt.grad, **tol)
    exact = copy.deepcopy(ref).double()
    x64 = torch.from_numpy(x).double().requires_grad_()
    exact(x64).backward(torch.from_numpy(dy).double())
    assert_close(torch.from_numpy(twin.grad_weight).double(), exact.weight.grad, rtol=1e-5, atol=1e-5)


# --- one idea: every layer is the generic standardize call with its axes ------------------------

def test_numpy_batchnorm_is_standardize_over_batch_and_positions():
    """BN's result (forward, backward, both modes) equals the generic call with axes (0, 2, 3)."""
    rng = np.random.default_rng(6)
    for shape in ((8, 3), (4, 3, 5), (4, 3, 2, 5)):
        axes = (0,) + tuple(range(2, len(shape)))
        bn = bnp.BatchNorm(shape[1], dtype=np.float64)
        bn.weight[...] = rng.standard_normal(shape[1])
        bn.bias[...] = rng.standard_normal(shape[1])
        bn.running_mean[...] = rng.standard_normal(shape[1])
        bn.running_var[...] = rng.random(shape[1]) + 0.5
        pshape = (shape[1],) + (1,) * (len(shape) - 2)
        w, b = bn.weight.reshape(pshape), bn.bias.reshape(pshape)
        for training in (True, False):
            bn.train(training)
            stats = {} if training else {"mean": bn.running_mean.reshape(pshape).copy(),
                                         "var": bn.running_var.reshape(pshape).copy()}
            x = rng.standard_normal(shape) * 3 + 2
            dy = rng.standard_normal(shape)
            x_hat, cache = bnp.standardize_forward(x, axes, bn.eps, **stats)
            np.testing.assert_allclose(bn.forward(x), x_hat * w + b, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(bn.backward(dy), bnp.standardize_backward(dy * w, cache),
                                       rtol=1e-10, atol=1e-12)


def test_each_layer_is_standardize_over_its_axes():
    """For (N, C, H, W): LN pools (1, 2, 3), IN (2, 3), GN (2,) of (N, G, -1); GN(1) = LN, GN(C) = IN."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6, 3, 5)) * 2 + 1
    ln, in_ = bnp.LayerNorm((6, 3, 5), dtype=np.float64), bnp.InstanceNorm(6, dtype=np.float64)
    np.testing.assert_allclose(ln.forward(x), bnp.standardize_forward(x, (1, 2, 3))[0], atol=1e-12)
    np.testing.assert_allclose(in_.forward(x), bnp.standardize_forward(x, (2, 3))[0], atol=1e-12)
    gn = bnp.GroupNorm(3, 6, dtype=np.float64)
    grouped = bnp.standardize_forward(x.reshape(4, 3, -1), (2,))[0].reshape(x.shape)
    np.testing.assert_allclose(gn.forward(x), grouped, atol=1e-12)
    np.testing.assert_allclose(bnp.GroupNorm(1, 6, dtype=np.float64).forward(x), ln.forward(x), atol=1e-12)
    np.testing.assert_allclose(bnp.GroupNorm(6, 6, dtype=np.float64).forward(x), in_.forward(x), atol=1e-12)
    rms = bnp.RMSNorm((6, 3, 5), eps=1e-6, dtype=np.float64).forward(x)
    np.testing.assert_allclose(rms, x / np.sqrt((x ** 2).mean(axis=(1, 2, 3), keepdims=True) + 1e-6))
    xt = torch.from_numpy(x)
    for y, ref in ((bt.standardize(xt, (0, 2, 3), 1e-5)[0], F.batch_norm(xt, None, None, training=True)),
                   (bt.standardize(xt, (1, 2, 3), 1e-5)[0], F.layer_norm(xt, (6, 3, 5))),
                   (bt.standardize(xt, (2, 3), 1e-5)[0], F.instance_norm(xt)),
                   (bt.standardize(xt.reshape(4, 3, -1), (2,), 1e-5)[0].reshape(x.shape),
                    F.group_norm(xt, 3)),
                   (bt.standardize(xt, (2, 3), 1e-5)[0],
                    torch.from_numpy(bnp.standardize_forward(x, (2, 3))[0]))):
        assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_standardize_needs_both_statistics_or_neither():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="give both mean and var, or neither"):
        bnp.standardize_forward(x, (0,), mean=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="give both mean and var, or neither"):
        bt.standardize(torch.from_numpy(x), (0,), 1e-5, var=torch.ones(1, 3))


def test_torch_batchnorm_module_is_standardize():
    g = torch.Generator().manual_seed(8)
    x = random_input((5, 3, 4, 4), "cpu", torch.float64, g)
    bn = bt.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.normal_(generator=g)
        bn.bias.normal_(generator=g)
    x_hat, mean, var = bt.standardize(x, (0, 2, 3), bn.eps)
    w, b = bn.weight.view(1, 3, 1, 1), bn.bias.view(1, 3, 1, 1)
    assert_close(bn(x), x_hat * w + b, rtol=1e-10, atol=1e-10)
    bn.eval()
    x_hat, _, _ = bt.standardize(x, (0, 2, 3), bn.eps, mean=bn.running_mean.view(1, 3, 1, 1),
                                 var=bn.running_var.view(1, 3, 1, 1))
    assert_close(bn(x), x_hat * w + b, rtol=1e-10, atol=1e-10)


# --- errors: torch's types and messages --------------------------------------------------------

def _x(*shape, dtype=torch.float32):
    return torch.randn(shape).to(dtype)


ERROR_CASES = {
    "LN input shape": lambda ns, f: ns.LayerNorm([4])(_x(4, 6, 5)),
    "LN input shape 2": lambda ns, f: ns.LayerNorm([6, 4])(_x(4, 6, 5)),
    "LN too many dims": lambda ns, f: ns.LayerNorm([2, 4, 6, 5])(_x(4, 6, 5)),
    "LN scalar input": lambda ns, f: ns.LayerNorm([5])(torch.tensor(1.0)),
    "LN int input with weight": lambda ns, f: ns.LayerNorm([5])(torch.ones(2, 5, dtype=torch.long)),
    "LN int input": lambda ns, f: ns.LayerNorm([5], elementwise_affine=False)(
        torch.ones(2, 5, dtype=torch.long)),
    "LN weight dtype": lambda ns, f: f.layer_norm(_x(4, 5), [5], torch.ones(5, dtype=torch.float64)),
    "LN double input float weight": lambda ns, f: f.layer_norm(_x(4, 5, dtype=torch.float64), [5],
                                                               torch.ones(5)),
    "LN half input bfloat16 weight": lambda ns, f: f.layer_norm(_x(4, 5, dtype=torch.half), [5],
                                                                torch.ones(5, dtype=torch.bfloat16)),
    "LN weight shape": lambda ns, f: f.layer_norm(_x(4, 6, 5), [5], torch.ones(4)),
    "LN bias shape": lambda ns, f: f.layer_norm(_x(4, 6, 5), [5], None, torch.ones(4)),
    "LN bad weight before bad input": lambda ns, f: f.layer_norm(_x(4, 6, 5), [4], torch.ones(3)),
    "LN empty normalized_shape": lambda ns, f: f.layer_norm(_x(4, 6, 5), []),
    "LN input not a tensor": lambda ns, f: f.layer_norm([1.0, 2.0], [2]),
    "LN normalized_shape int": lambda ns, f: f.layer_norm(_x(4, 5), 5),
    "GN not divisible (ctor)": lambda ns, f: ns.GroupNorm(3, 10),
    "GN not divisible (ctor) 2": lambda ns, f: ns.GroupNorm(5, 13),
    "GN zero groups": lambda ns, f: ns.GroupNorm(0, 6),
    "GN wrong channels": lambda ns, f: ns.GroupNorm(3, 6)(_x(4, 9, 5)),
    "GN channels not divisible": lambda ns, f: ns.GroupNorm(3, 6)(_x(4, 7, 5)),
    "GN 1D input": lambda ns, f: ns.GroupNorm(3, 6)(_x(6)),
    "GN 0D input": lambda ns, f: f.group_norm(torch.tensor(1.0), 1),
    "GN int input": lambda ns, f: ns.GroupNorm(3, 6)(torch.ones(4, 6, dtype=torch.long)),
    "GN int input no affine": lambda ns, f: ns.GroupNorm(3, 6, affine=False)(
        torch.ones(4, 6, dtype=torch.int32)),
    "GN weight dtype": lambda ns, f: f.group_norm(_x(4, 6), 3, torch.ones(6, dtype=torch.float64)),
    "GN weight shape": lambda ns, f: f.group_norm(_x(4, 6), 3, torch.ones(5)),
    "GN bias shape": lambda ns, f: f.group_norm(_x(4, 6, 5), 3, None, torch.ones(3)),
    "GN bias shape with weight": lambda ns, f: f.group_norm(_x(4, 6, 5), 3, torch.ones(6), torch.ones(3)),
    "GN functional not divisible": lambda ns, f: f.group_norm(_x(4, 6), 4),
    "IN2d rank": lambda ns, f: ns.InstanceNorm2d(3)(_x(4, 3)),
    "IN1d rank": lambda ns, f: ns.InstanceNorm1d(3)(_x(4, 3, 2, 2)),
    "IN3d rank": lambda ns, f: ns.InstanceNorm3d(3)(_x(4, 3, 2)),
    "IN affine channel mismatch": lambda ns, f: ns.InstanceNorm1d(3, affine=True)(_x(4, 5, 6)),
    "IN tracking channel mismatch": lambda ns, f: ns.InstanceNorm1d(3, track_running_stats=True)(
        _x(4, 5, 6)),
    "IN one spatial element": lambda ns, f: ns.InstanceNorm1d(3)(_x(4, 3, 1)),
    "IN one spatial element eval": lambda ns, f: ns.InstanceNorm1d(3).eval()(_x(4, 3, 1)),
    "IN int input": lambda ns, f: ns.InstanceNorm1d(3)(torch.ones(4, 3, 5, dtype=torch.long)),
    "IN weight dtype": lambda ns, f: f.instance_norm(_x(4, 3, 5), weight=torch.ones(3, dtype=torch.float64)),
    "IN eval without stats": lambda ns, f: f.instance_norm(_x(4, 6, 5), use_input_stats=False),
    "IN weight size": lambda ns, f: f.instance_norm(_x(4, 6, 5), weight=torch.ones(4)),
    "IN bias size": lambda ns, f: f.instance_norm(_x(4, 6, 5), bias=torch.ones(4)),
    "IN running_mean only": lambda ns, f: f.instance_norm(_x(4, 6, 5), running_mean=torch.zeros(6)),
    "IN running stats size eval": lambda ns, f: f.instance_norm(_x(4, 6, 5), torch.zeros(5), torch.ones(5),
                                                                use_input_stats=False),
    "IN running stats require grad": lambda ns, f: f.instance_norm(
        _x(4, 6, 5), torch.zeros(6, requires_grad=True), torch.ones(6)),
    "IN 2D functional": lambda ns, f: f.instance_norm(_x(4, 6)),
    "RMS input shape": lambda ns, f: ns.RMSNorm([4])(_x(4, 6, 5)),
    "RMS int input": lambda ns, f: ns.RMSNorm([5])(torch.ones(2, 5, dtype=torch.long)),
    "RMS weight shape": lambda ns, f: f.rms_norm(_x(4, 6, 5), [5], torch.ones(4)),
    "RMS empty normalized_shape": lambda ns, f: f.rms_norm(_x(4, 6, 5), []),
}


@pytest.mark.parametrize("label", list(ERROR_CASES))
def test_errors_match_torch(label):
    def outcome(ns, f):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")       # torch's own UserWarnings on some cases
                ERROR_CASES[label](ns, f)
        except Exception as exc:  # noqa: BLE001  (the exception itself is what is compared)
            return type(exc), str(exc)
        return None, None

    expected = outcome(nn, F)
    assert expected[0] is not None, "torch raised nothing: the case is wrong"
    assert outcome(bt, bt) == expected


def _np_x(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# (label, the NumPy call, the same through torch.nn): the NumPy layers raise torch's type and wording
# (sizes spelled (4, 3, 1) instead of torch.Size([4, 3, 1]), as elsewhere in bncourse.numpy).
NUMPY_ERROR_CASES = {
    "LN input shape": (lambda: bnp.LayerNorm([4]).forward(_np_x(4, 6, 5)),
                       lambda: nn.LayerNorm([4])(_x(4, 6, 5))),
    "LN empty normalized_shape": (lambda: bnp.LayerNorm([]).forward(_np_x(4, 6, 5)),
                                  lambda: nn.LayerNorm([])(_x(4, 6, 5))),
    "RMS input shape": (lambda: bnp.RMSNorm([6, 4]).forward(_np_x(4, 6, 5)),
                        lambda: nn.RMSNorm([6, 4])(_x(4, 6, 5))),
    "GN not divisible (ctor)": (lambda: bnp.GroupNorm(3, 10), lambda: nn.GroupNorm(3, 10)),
    "GN channels not divisible": (lambda: bnp.GroupNorm(3, 6).forward(_np_x(4, 7, 5)),
                                  lambda: nn.GroupNorm(3, 6)(_x(4, 7, 5))),
    "GN wrong channels": (lambda: bnp.GroupNorm(3, 6).forward(_np_x(4, 9, 5)),
                          lambda: nn.GroupNorm(3, 6)(_x(4, 9, 5))),
    "GN 1D input": (lambda: bnp.GroupNorm(3, 6).forward(_np_x(6)), lambda: nn.GroupNorm(3, 6)(_x(6))),
    "IN one spatial element": (lambda: bnp.InstanceNorm(3).forward(_np_x(4, 3, 1)),
                               lambda: nn.InstanceNorm1d(3)(_x(4, 3, 1))),
    "IN affine channel mismatch": (lambda: bnp.InstanceNorm(3, affine=True).forward(_np_x(4, 5, 6)),
                                   lambda: nn.InstanceNorm1d(3, affine=True)(_x(4, 5, 6))),
    "IN tracking channel mismatch": (
        lambda: bnp.InstanceNorm(3, track_running_stats=True).forward(_np_x(4, 5, 6)),
        lambda: nn.InstanceNorm1d(3, track_running_stats=True)(_x(4, 5, 6))),
}


@pytest.mark.filterwarnings("ignore:input's size at dim=1 does not match num_features")
@pytest.mark.parametrize("label", list(NUMPY_ERROR_CASES))
def test_numpy_errors_match_torch(label):
    ours, theirs = NUMPY_ERROR_CASES[label]
    with pytest.raises(Exception) as expected:
        theirs()
    with pytest.raises(type(expected.value)) as got:
        ours()
    assert type(got.value) is type(expected.value)
    assert str(got.value) == re.sub(r"torch\.Size\(\[([^\]]*)\]\)", r"(\1)", str(expected.value))


def test_instance_norm_channel_mismatch_warns_like_torch():
    for layer in (nn.InstanceNorm1d(3), bt.InstanceNorm1d(3), bnp.InstanceNorm(3)):
        x = _x(4, 5, 6)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = layer(x.numpy() if isinstance(layer, bnp.InstanceNorm) else x)
        assert y.shape == (4, 5, 6)
        assert [str(w.message) for w in caught] == [
            "input's size at dim=1 does not match num_features. You can silence this warning by not "
            "passing in num_features, which is not used because affine=False"]


# --- constructor, repr, state_dict, pickling, reduced precision ---------------------------------

CTOR_CASES = [("LayerNorm", ((2, 5),), {"bias": False}), ("LayerNorm", (5, 1e-3, False), {}),
              ("GroupNorm", (2, 4), {"affine": False}), ("GroupNorm", (2, 4), {"bias": False}),
              ("InstanceNorm1d", (3,), {}), ("InstanceNorm2d", (3,), {"affine": True,
                                                                       "track_running_stats": True}),
              ("InstanceNorm3d", (3, 1e-3, None, True, True), {"bias": False}),
              ("RMSNorm", (5,), {}), ("RMSNorm", ([2, 5], 1e-6, False), {})]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_signature_matches_torch(name):
    ours = inspect.signature(OURS[name].__init__).parameters
    ref = inspect.signature(TORCH[name].__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == \
        [(p.name, p.kind, p.default) for p in ref.values()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CTOR_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CTOR_CASES)])
def test_constructor_parameters_buffers_repr(case, device):
    name, args, kwargs = case
    ref = TORCH[name](*args, **kwargs, device=device, dtype=torch.float64)
    ours = OURS[name](*args, **kwargs, device=device, dtype=torch.float64)
    assert repr(ours) == repr(ref)
    for what in ("named_parameters", "named_buffers"):
        a, b = list(getattr(ref, what)()), list(getattr(ours, what)())
        assert [n for n, _ in b] == [n for n, _ in a]
        for (n, t), (_, u) in zip(a, b):
            assert u.dtype == t.dtype and u.device == t.device, n
            assert_close(u, t, rtol=0, atol=0)
    for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert (getattr(ours, attr, None) is None) == (getattr(ref, attr, None) is None), attr
    compare_state(ref, ours, {"rtol": 0, "atol": 0})
    ours.load_state_dict(ref.state_dict())
    ref.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("name", ["InstanceNorm1d", "InstanceNorm2d"])
def test_instance_norm_old_checkpoints(name):
    """torch's two compatibility rules: pre-0.4 running stats on a non-tracking module are reported;
    a tracking module without ``num_batches_tracked`` in the checkpoint gets 0."""
    stale = {"running_mean": torch.zeros(3), "running_var": torch.ones(3)}
    outcomes = []
    for cls in (TORCH[name], OURS[name]):
        m = cls(3)
        state = OrderedDict(stale)
        state._metadata = {"": {}}          # no version: a pre-0.4 checkpoint
        try:
            m.load_state_dict(state)
        except RuntimeError as exc:
            outcomes.append(str(exc))
        tracking = cls(3, track_running_stats=True)
        state = OrderedDict(stale)
        state._metadata = {"": {"version": 1}}
        tracking.load_state_dict(state)
        assert int(tracking.num_batches_tracked) == 0
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1]


def test_instance_norm_running_stats_rules():
    """Tracking: running stats move in training (never num_batches_tracked), normalize in eval;
    momentum=None freezes them, as in torch."""
    g = torch.Generator().manual_seed(9)
    for kwargs in ({"track_running_stats": True}, {"track_running_stats": True, "momentum": None}):
        ref, ours = make_pair("InstanceNorm2d", (3,), kwargs, "cpu", torch.float64)
        before = ours.running_mean.clone()
        for training in (True, True, False):
            ref.train(training)
            ours.train(training)
            x = random_input((4, 3, 5, 5), "cpu", torch.float64, g)
            assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)
            compare_state(ref, ours, tols(torch.float64))
        assert int(ours.num_batches_tracked) == 0
        assert torch.equal(ours.running_mean, before) == (kwargs.get("momentum", 0.1) is None)


@pytest.mark.parametrize("name, args, shape", [
    ("LayerNorm", ([5],), (4, 3, 5)), ("GroupNorm", (2, 4), (3, 4, 5)),
    ("InstanceNorm2d", (4, 1e-5, 0.1, True, True), (3, 4, 5, 5)), ("RMSNorm", ([5],), (4, 3, 5))])
def test_pickle_deepcopy_and_state_dict_roundtrip(name, args, shape):
    ref, ours = make_pair(name, args, {}, "cpu", torch.float32)
    x = random_input(shape, "cpu", torch.float32, torch.Generator().manual_seed(10))
    y = ours(x)
    buf = io.BytesIO()
    torch.save(ours.state_dict(), buf)
    buf.seek(0)
    fresh = OURS[name](*args)
    fresh.load_state_dict(torch.load(buf))
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours), fresh):
        assert_close(clone(x), ours(x))
    assert_close(y, ref(x))


_HALF_TOL = {torch.float16: {"rtol": 2 ** -10, "atol": 2 ** -10},
             torch.bfloat16: {"rtol": 2 ** -7, "atol": 2 ** -7}}


def _run(m, x, dy):
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    y = m(x)
    y.backward(dy)
    return [y, x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")   # torch's rms_norm
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xdtype", [torch.float16, torch.bfloat16], ids=["half", "bf16"])
@pytest.mark.parametrize("pdtype", ["same", "float32"])
@pytest.mark.parametrize("name, args, shape", [
    ("LayerNorm", ([8],), (4, 6, 8)), ("GroupNorm", (2, 6), (4, 6, 8)),
    ("InstanceNorm1d", (6, 1e-5, 0.1, True), (4, 6, 8)), ("RMSNorm", ([8],), (4, 6, 8))])
def test_reduced_precision_input(name, args, shape, xdtype, pdtype, device):
    """float16/bfloat16 input, computed in float32 like torch: torch's dtypes; with float32
    parameters (torch's mixed path) output and dx within 1 ulp of torch's; in all cases every
    result is as close to the float64 truth as torch's is (torch's InstanceNorm rounds its
    statistics to half with half parameters, 1 ulp off the truth, which ours does not)."""
    pd = xdtype if pdtype == "same" else torch.float32
    ref, ours = make_pair(name, args, {}, device, pd)
    exact_module = copy.deepcopy(ref).double()
    g = torch.Generator().manual_seed(11)
    x = random_input(shape, device, xdtype, g)
    dy = torch.randn(shape, generator=g).to(device, xdtype)
    got, expected = _run(ours, x, dy), _run(ref, x, dy)
    exact = _run(exact_module, x.double(), dy.double())
    assert [t.dtype for t in got] == [t.dtype for t in expected]
    assert got[0].dtype == got[1].dtype == xdtype
    if pdtype == "float32":
        assert_close(got[0], expected[0], **_HALF_TOL[xdtype])
        assert_close(got[1], expected[1], **_HALF_TOL[xdtype])
    for what, a, b, e in zip(("y", "dx", "dweight", "dbias"), got, expected, [t.detach() for t in exact]):
        ulp = torch.finfo(a.dtype).eps * float(e.abs().max().clamp_min(1))
        err, torch_err = (float((t.detach().double() - e).abs().max()) for t in (a, b))
        assert err <= max(torch_err, ulp), f"{what}: ours {err:.3g}, torch {torch_err:.3g}, 1 ulp {ulp:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
@pytest.mark.parametrize("name, args", [("LayerNorm", ([5],)), ("GroupNorm", (3, 6)),
                                        ("InstanceNorm2d", (6, 1e-5, 0.1, True)), ("RMSNorm", ([5],))])
def test_memory_format_of_the_output_is_torchs(name, args, layout, device):
    """Same values, gradients and output strides as torch for channels_last and transposed input."""
    ref, ours = make_pair(name, args, {}, device, torch.float64)
    x = random_input((4, 6, 5, 5), device, torch.float64, torch.Generator().manual_seed(12))
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else \
        x.transpose(2, 3).contiguous().transpose(2, 3)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yo = ref(xr), ours(xo)
    if device == "cpu":     # CUDA kernels choose their own layouts
        assert yo.stride() == yr.stride()
    assert_close(yo, yr, **tols(torch.float64))
    dy = torch.randn_like(yr)
    yr.backward(dy)
    yo.backward(dy)
    assert_close(xo.grad, xr.grad, **tols(torch.float64))


def test_rms_norm_default_eps_is_the_compute_dtype_epsilon():
    """eps=None: float32's epsilon for float16 input (its compute dtype), float64's for float64."""
    x = torch.randn(4, 5, dtype=torch.float64) * 1e-4
    assert_close(bt.rms_norm(x, [5]), F.rms_norm(x, [5]), rtol=1e-12, atol=1e-12)
    xh = (torch.randn(4, 5) * 1e-3).half()
    assert_close(bt.rms_norm(xh, [5]), F.rms_norm(xh, [5]))


def test_empty_and_no_batch_inputs():
    for name, args, shape in (("LayerNorm", ([5],), (0, 5)), ("GroupNorm", (3, 6), (0, 6, 5)),
                              ("InstanceNorm1d", (3,), (0, 3, 5)), ("RMSNorm", ([5],), (0, 5)),
                              ("InstanceNorm2d", (3, 1e-5, 0.1, True, True), (3, 4, 4))):
        ref, ours = make_pair(name, args, {}, "cpu", torch.float64)
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        y = ours(x)
        assert y.shape == ref(x).shape == shape
        y.sum().backward()
        compare_state(ref, ours, tols(torch.float64))


def test_numpy_layers_on_empty_batches():
    for layer, shape in ((bnp.LayerNorm(5), (0, 5)), (bnp.GroupNorm(3, 6), (0, 6, 5)),
                         (bnp.InstanceNorm(3, affine=True), (0, 3, 5)), (bnp.RMSNorm(5), (0, 5))):
        x = np.zeros(shape, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")           # no "mean of empty slice"
            assert layer.forward(x).shape == shape
            assert layer.backward(x).shape == shape
        assert not np.any(layer.grad_weight)


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name, args, shape", [
    ("LayerNorm", ([5],), (4, 3, 5)), ("GroupNorm", (2, 4), (3, 4, 5)),
    ("InstanceNorm1d", (4, 1e-5, 0.1, True, True), (3, 4, 5)), ("RMSNorm", ([5],), (4, 3, 5))])
def test_no_native_norm_on_the_compute_path(name, args, shape):
    m = OURS[name](*args)
    x = torch.randn(shape, requires_grad=True)
    with _OpRecorder() as rec:
        y = m(x)
        y.backward(torch.randn_like(y))
    assert rec.ops, "the recorder saw nothing"
    assert not [op for op in rec.ops if "norm" in op], rec.ops
