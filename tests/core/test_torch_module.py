"""``bncourse.torch`` against ``torch.nn.BatchNorm*d`` / ``F.batch_norm`` where only torch has the
behaviour: the recipes of ``test_nn.py`` (channels_last, non-contiguous, empty batch, simple
average, buffer flip), float16/bfloat16 input, state_dict, pickling, conversion, and that no native
batch_norm runs. The cases every backend shares are in ``test_parity.py``.

Every test takes the ``device`` fixture (``conftest.py``): ``cpu``, and ``cuda`` where there is a GPU.
"""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import bncourse.torch as bt
from cases import (F32_VS_FLOAT64, MODULE_CASES, MODULE_IDS, OUR_CLASSES, TORCH_CLASSES, as_float64,
                   clone, compare_state, make_pair, opinfo_samples, random_batch, step_and_compare,
                   tols)
from torch_compat import needs_bias_kw

torch.set_num_threads(1)

# --- OpInfo samples of nn.functional.batch_norm -----------------------------------------------------

def test_opinfo_samples_match_functional_float32_direct(device):
    """Also straight against torch's float32 kernel, on the samples where it is accurate itself."""
    torch.manual_seed(0)
    for x, rm, rv, w, b, kwargs in opinfo_samples(device, torch.float32):
        args64 = [as_float64(t) for t in (x, rm, rv, w, b)]
        exact = F.batch_norm(*args64, **kwargs)
        yr = F.batch_norm(*[clone(t) for t in (x, rm, rv, w, b)], **kwargs)
        if not torch.allclose(yr.double(), exact, **F32_VS_FLOAT64):
            continue   # torch's float32 result is the outlier here (see above)
        yo = bt.batch_norm(*[clone(t) for t in (x, rm, rv, w, b)], **kwargs)
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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_outputs_stay_on_the_device_and_in_half():
    """test_batchnorm_nonaffine_cuda_half_input: half input, float32 non-affine BN, train and eval."""
    m = bt.BatchNorm2d(3, affine=False, device="cuda")
    ref = torch.nn.BatchNorm2d(3, affine=False, device="cuda")
    x = torch.rand(16, 3, 24, 24, device="cuda", dtype=torch.half)
    for training in (True, False):
        m.train(training)
        ref.train(training)
        y = m(x)
        assert y.dtype == torch.half and y.device.type == "cuda"
        torch.testing.assert_close(y, ref(x), rtol=2 ** -10, atol=2 ** -10)
        torch.testing.assert_close(m.running_var, ref.running_var)
