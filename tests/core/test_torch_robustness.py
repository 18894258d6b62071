"""bncourse.torch on the inputs the differential fuzzer found (layouts, IEEE specials, arguments).

Each test pins one cause with a deterministic example; ``test_fuzz_differential.py`` searches
around them. Tolerances: float64 parity at ``tolerances.FLOAT64_PARITY``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import bncourse.torch as bt
from bncourse.torch._layout import suggest_memory_format
from tolerances import FLOAT64_PARITY

torch.set_num_threads(1)


def _pair(cls_name: str, c: int, **kw):
    ref = getattr(torch.nn, cls_name)(c, dtype=torch.float64, **kw)
    ours = getattr(bt, cls_name)(c, dtype=torch.float64, **kw)
    return ref, ours


def _run(m, x, dy):
    xi = x.detach().requires_grad_()
    y = m(xi)
    (dx,) = torch.autograd.grad(y, xi, dy)
    return y, dx


def _dense_significant(t: torch.Tensor) -> tuple:
    return tuple((d, s) for d, s in zip(t.shape, t.stride()) if d > 1)


def test_transposed_1d_input_as_after_an_embedding():
    x = torch.randn(2, 4, 3, dtype=torch.float64).transpose(1, 2)   # (N, L, C) -> (N, C, L)
    ref, ours = _pair("BatchNorm1d", 3)
    assert_close(ours(x), ref(x), **FLOAT64_PARITY)
    assert_close(ours.running_var, ref.running_var, **FLOAT64_PARITY)


LAYOUTS = {
    "transposed_2d": lambda: torch.randn(3, 5, dtype=torch.float64).t(),
    "permuted_3d": lambda: torch.randn(4, 5, 3, dtype=torch.float64).permute(0, 2, 1),
    "stepped_channels": lambda: torch.randn(2, 8, 4, 5, dtype=torch.float64)[:, ::2],
    "stepped_spatial": lambda: torch.randn(3, 4, 6, 5, dtype=torch.float64)[:, :, ::2, 1:],
    "expanded": lambda: torch.randn(1, 3, 1, 5, dtype=torch.float64).expand(4, 3, 2, 5),
    "channels_last": lambda: torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last),
    "channels_last_3d": lambda: torch.randn(2, 3, 2, 4, 3, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last_3d),
    "nhwc_permute": lambda: torch.randn(2, 4, 5, 3, dtype=torch.float64).permute(0, 3, 1, 2),
    "odd_permute": lambda: torch.randn(4, 2, 3, 5, dtype=torch.float64).permute(1, 2, 0, 3),
    "cl_through_size1": lambda: torch.empty_strided((1, 4, 2, 1, 1), (1, 1, 4, 8, 4),
                                                    dtype=torch.float64).normal_(),
}
CLASSES = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}


@pytest.mark.parametrize("dy_kind", ["contiguous", "permuted"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_strided_inputs_match_torch_values_and_strides(layout, training, dy_kind):
    torch.manual_seed(0)
    x = LAYOUTS[layout]()
    ref, ours = _pair(CLASSES[x.dim()], x.shape[1])
    dy = torch.randn(x.shape, dtype=torch.float64)
    if dy_kind == "permuted":
        dy = dy.transpose(0, 1).contiguous().transpose(0, 1)
    for m in (ref, ours):
        m.train(training)
    y_ref, dx_ref = _run(ref, x, dy)
    y, dx = _run(ours, x, dy)
    assert_close(y, y_ref, **FLOAT64_PARITY)
    assert _dense_significant(y) == _dense_significant(y_ref)
    assert _dense_significant(dx) == _dense_significant(y_ref)   # dx gets the output's format
    if layout == "cl_through_size1":
        # torch 2.13's CPU backward reads this dy in channels_last order: compare with the truth
        truth = _pair(CLASSES[x.dim()], x.shape[1])[0].train(training)
        _, dx_ref = _run(truth, x.contiguous(), dy)
    assert_close(dx, dx_ref, **FLOAT64_PARITY)
    assert_close(ours.running_mean, ref.running_mean, **FLOAT64_PARITY)


@pytest.mark.parametrize("layout", ["permuted_3d", "channels_last", "stepped_channels"])
def test_double_backward_on_strided_inputs(layout):
    torch.manual_seed(1)
    x = LAYOUTS[layout]().requires_grad_()
    m = getattr(bt, CLASSES[x.dim()])(x.shape[1], dtype=torch.float64)
    w, b = m.weight, m.bias
    assert torch.autograd.gradgradcheck(
        lambda x_, w_, b_: bt.batch_norm(x_, None, None, w_, b_, True), (x, w, b))


@pytest.mark.parametrize("dy_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("x_strides", [(9, 1, 3, 1), (9, 1, 3, 27)])
def test_grad_format_follows_torch_for_ambiguous_size1_layouts(x_strides, dy_format):
    # (3, 3, 3, 1) that is channels_last-dense only through its size-1 W: torch's output is
    # channels_last, but dx is contiguous when dy's strides say channels_last (ATen's slow path)
    x = torch.empty_strided((3, 3, 3, 1), x_strides, dtype=torch.float64).normal_()
    dy = torch.randn(3, 3, 3, 1, dtype=torch.float64)
    if dy_format == "channels_last":
        dy = dy.contiguous(memory_format=torch.channels_last)
    ref, ours = _pair("BatchNorm2d", 3)
    y_ref, dx_ref = _run(ref, x, dy)
    y, dx = _run(ours, x, dy)
    assert _dense_significant(y) == _dense_significant(y_ref)
    assert _dense_significant(dx) == _dense_significant(dx_ref)
    assert_close(y, y_ref, **FLOAT64_PARITY)
    if dy_format == "channels_last":
        assert_close(dx, dx_ref, **FLOAT64_PARITY)


def test_suggest_memory_format_matches_torch_output():
    for make in LAYOUTS.values():
        x = make()
        if x.dim() < 4:
            continue
        y = getattr(torch.nn, CLASSES[x.dim()])(x.shape[1], dtype=torch.float64)(x)
        fmt = suggest_memory_format(x)
        assert y.is_contiguous(memory_format=fmt)


def test_non_contiguous_running_buffers_are_updated_in_place():
    store = torch.zeros(6, dtype=torch.float64)
    var_store = torch.ones(6, dtype=torch.float64)
    rm, rv = store[::2], var_store[::2]
    rm_ref, rv_ref = rm.clone(), rv.clone()
    x = torch.randn(5, 3, dtype=torch.float64)
    F.batch_norm(x, rm_ref, rv_ref, training=True, momentum=0.3)
    bt.batch_norm(x, rm, rv, training=True, momentum=0.3)
    assert_close(store[::2], rm_ref, **FLOAT64_PARITY)
    assert_close(var_store[::2], rv_ref, **FLOAT64_PARITY)
    assert torch.all(store[1::2] == 0)


# --- IEEE specials ------------------------------------------------------------------------------

def test_constant_channel_gives_exactly_bias_where_torch_adds_noise():
    x = torch.full((4, 2, 3), 0.3, dtype=torch.float64)
    x[:, 1] = torch.randn(4, 3, dtype=torch.float64)
    w, b = torch.tensor([2.0, 1.0], dtype=torch.float64), torch.tensor([0.7, 0.0], dtype=torch.float64)
    y = bt.batch_norm(x, None, None, w, b, True, 0.1, 1e-12)
    assert torch.all(y[:, 0] == 0.7)
    y_ref = F.batch_norm(x, None, None, w, b, True, 0.1, 1e-12)
    assert_close(y[:, 1], y_ref[:, 1], **FLOAT64_PARITY)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_below_the_dtype_range_is_not_rounded_away(dtype):
    eps = 1e-50 if dtype == torch.float32 else 1e-320
    x = torch.full((4, 3), 5.0, dtype=dtype)             # constant: var = 0, only eps is left
    y = bt.batch_norm(x, None, None, None, torch.ones(3, dtype=dtype), True, 0.1, eps)
    assert torch.all(y == 1.0)     # torch: 1 + rounding(x - mean) / sqrt(eps), e.g. 1e18 in float32
    tiny = torch.randn(6, 3, dtype=dtype) * (1e-25 if dtype == torch.float32 else 1e-160)
    xi = tiny.clone().requires_grad_()
    dy = torch.randn(6, 3, dtype=dtype)
    (dx,) = torch.autograd.grad(bt.batch_norm(xi, None, None, None, None, True, 0.1, eps), xi, dy)
    # the truth is torch in float64 (torch's float32 backward rounds eps away: off by ~40% here)
    xr = tiny.to(torch.float64).requires_grad_()
    (dx_ref,) = torch.autograd.grad(F.batch_norm(xr, None, None, None, None, True, 0.1, eps), xr,
                                    dy.to(torch.float64))
    assert torch.isfinite(dx).all()
    assert_close(dx.to(torch.float64), dx_ref, rtol=1e-5, atol=0)


def test_huge_float32_values_keep_their_variance():
    torch.manual_seed(2)
    x = torch.randn(8, 3) * 1e25                          # squares overflow float32
    rm, rv = torch.zeros(3), torch.ones(3)
    rm64, rv64 = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y = bt.batch_norm(x, rm, rv, None, None, True, 0.1, 1e-5)
    # torch's float32 kernel returns 0 here (its variance overflows); the truth is float64
    y64 = F.batch_norm(x.double(), rm64, rv64, None, None, True, 0.1, 1e-5)
    assert_close(y, y64.float())
    assert_close(rm, rm64.float())
    assert torch.all(torch.isinf(rv))                     # 1e49 is beyond float32, as in torch
    assert torch.all(torch.isinf(rv64.float()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_inf_and_nan_propagate_like_torch(dtype):
    x = torch.randn(5, 4).to(dtype)
    x[0, 0] = math.inf                  # +inf only: running mean +inf, var nan
    x[1, 1], x[2, 1] = math.inf, -math.inf
    x[3, 2] = math.nan
    rm, rv = torch.zeros(4, dtype=dtype), torch.ones(4, dtype=dtype)
    rm_ref, rv_ref = rm.clone(), rv.clone()
    y = bt.batch_norm(x, rm, rv, None, None, True, 1.0, 1e-5)
    y_ref = F.batch_norm(x, rm_ref, rv_ref, None, None, True, 1.0, 1e-5)
    assert_close(y, y_ref, equal_nan=True, rtol=1e-2, atol=1e-2)
    assert_close(rm, rm_ref, equal_nan=True, rtol=1e-2, atol=1e-2)
    assert_close(rv, rv_ref, equal_nan=True, rtol=1e-2, atol=1e-2)
    assert rm[0] == math.inf


# --- arguments ----------------------------------------------------------------------------------

def _outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001
        return None, (type(exc), str(exc))


ARG_CASES = {
    "training int": dict(training=1),
    "training None": dict(training=None),
    "training numpy bool": dict(training=np.bool_(True)),
    "training tensor": dict(training=torch.tensor(True)),
    "momentum 0-d tensor": dict(training=True, momentum=torch.tensor(0.3)),
    "eps 0-d tensor": dict(training=True, eps=torch.tensor(1e-3)),
    "eps 0-d zero tensor": dict(training=True, eps=torch.tensor(0.0)),
    "eps 1-d tensor": dict(training=True, eps=torch.tensor([1e-3])),
    "momentum requires grad": dict(training=True, momentum=torch.tensor(0.1, requires_grad=True)),
    "momentum None": dict(training=True, momentum=None),
    "momentum numpy": dict(training=True, momentum=np.float32(0.5)),
    "momentum complex tensor": dict(training=True, momentum=torch.tensor(1j)),
    "eps string in eval": dict(training=False, eps="a"),
    "training int and eps negative": dict(training=1, eps=-1.0),
    "training int and momentum str": dict(training=1, momentum="s"),
    "weight None with bias": dict(training=True, weight=None, bias=torch.ones(3)),
    "weight wrong size and training int": dict(training=1, weight=torch.ones(4)),
    "running_mean 2-D and bias wrong dtype": dict(training=False,
                                                  running_mean=torch.zeros(1, 3),
                                                  bias=torch.ones(3, dtype=torch.float64)),
}


@pytest.mark.parametrize("name", sorted(ARG_CASES))
def test_arguments_get_torch_first_complaint(name):
    kwargs = dict(ARG_CASES[name])
    base = dict(weight=torch.ones(3), bias=torch.zeros(3))
    base.update({k: v for k, v in kwargs.items() if k in ("weight", "bias")})
    rm = kwargs.pop("running_mean", torch.zeros(3))
    kwargs = {k: v for k, v in kwargs.items() if k not in ("weight", "bias")}
    x = torch.randn(4, 3)
    rm_ref, rv_ref, rm_o, rv_o = rm.clone(), torch.ones(3), rm.clone(), torch.ones(3)
    y_ref, err_ref = _outcome(F.batch_norm, x, rm_ref, rv_ref, base["weight"], base["bias"], **kwargs)
    y, err = _outcome(bt.batch_norm, x, rm_o, rv_o, base["weight"], base["bias"], **kwargs)
    assert err == err_ref
    if err_ref is None:
        assert_close(y, y_ref)
        assert_close(rm_o, rm_ref)
        assert_close(rv_o, rv_ref)


def test_module_with_tensor_momentum_and_eps():
    ref = torch.nn.BatchNorm1d(3, momentum=torch.tensor(0.25), eps=torch.tensor(1e-3))
    ours = bt.BatchNorm1d(3, momentum=torch.tensor(0.25), eps=torch.tensor(1e-3))
    x = torch.randn(6, 3)
    assert_close(ours(x), ref(x))
    assert_close(ours.running_var, ref.running_var)
