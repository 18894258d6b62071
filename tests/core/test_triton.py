"""``bncourse.triton``: fused Triton kernels against ``torch.nn.functional.batch_norm`` and float64.

Without a GPU the kernels run in Triton's interpreter on CPU tensors: ``TRITON_INTERPRET=1`` is set
before ``triton`` is first imported (Triton decides interpreted or compiled then). With a GPU the
same tests run compiled on CUDA tensors, and the ``cuda``-marked cases add the benchmark shapes.
Interpreted kernels are slow: the CPU shapes are small.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from cases import (MODULE_CASES, MODULE_IDS, TORCH_CLASSES, compare_state, random_batch,
                   step_and_compare)

# Triton reads TRITON_INTERPRET when it is first imported, and again in modules it imports lazily, so
# without a GPU it stays set in this process (only Triton reads it; no other test uses Triton).
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="bncourse.triton needs triton (pip install triton)")
from bncourse.triton import _kernels  # noqa: E402
import bncourse.triton as btr  # noqa: E402
from bncourse.torch._layout import Layout  # noqa: E402

DEVICE = "cpu" if _kernels.INTERPRETED else "cuda"
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="triton was imported compiled earlier in this process and there is no GPU")

OURS = {"BatchNorm1d": btr.BatchNorm1d, "BatchNorm2d": btr.BatchNorm2d,
        "BatchNorm3d": btr.BatchNorm3d}
HALF = (torch.float16, torch.bfloat16)

# (shape, memory format): every layout the kernels take without a copy; NC11 is a spatial size of 1
LAYOUTS = [
    ((7, 5), torch.contiguous_format),
    ((4, 3, 9), torch.contiguous_format),
    ((3, 4, 5, 6), torch.contiguous_format),
    ((3, 4, 5, 6), torch.channels_last),
    ((2, 3, 3, 4, 5), torch.channels_last_3d),
    ((6, 3, 1, 1), torch.contiguous_format),
]
LAYOUT_IDS = ["NC", "NCL", "NCHW", "NHWC", "NDHWC", "NC11"]


def _reference(x, dy, weight, bias, rm, rv, training, momentum=0.1, eps=1e-5):
    """``F.batch_norm`` forward + backward; float16/bfloat16 input is computed in float32.

    Returns ``(y, dx, dweight, dbias, running_mean, running_var)`` in the input's / parameters' dtypes.
    """
    ct = torch.float32 if x.dtype in HALF else x.dtype
    xr = x.detach().to(ct).requires_grad_()
    w = weight.detach().to(ct).requires_grad_() if weight is not None else None
    b = bias.detach().to(ct).requires_grad_() if bias is not None else None
    rm_r = rm.to(ct).clone() if rm is not None else None
    rv_r = rv.to(ct).clone() if rv is not None else None
    y = F.batch_norm(xr, rm_r, rv_r, w, b, training, momentum, eps)
    grads = torch.autograd.grad(y, [t for t in (xr, w, b) if t is not None], dy.to(ct))
    dx, dw, db = grads[0], (grads[1] if w is not None else None), (grads[-1] if b is not None else None)
    cast = (lambda t, like: None if t is None else t.to(like.dtype))
    return (y.to(x.dtype), dx.to(x.dtype), cast(dw, weight), cast(db, bias), cast(rm_r, rm),
            cast(rv_r, rv))


def _ours(x, dy, weight, bias, rm, rv, training, momentum=0.1, eps=1e-5):
    xo = x.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_() if weight is not None else None
    b = bias.detach().clone().requires_grad_() if bias is not None else None
    rm_o = rm.clone() if rm is not None else None
    rv_o = rv.clone() if rv is not None else None
    y = btr.batch_norm(xo, rm_o, rv_o, w, b, training, momentum, eps)
    grads = torch.autograd.grad(y, [t for t in (xo, w, b) if t is not None], dy)
    dx, dw, db = grads[0], (grads[1] if w is not None else None), (grads[-1] if b is not None else None)
    return y, dx, dw, db, rm_o, rv_o


def _inputs(shape, fmt, dtype, param_dtype, seed):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = random_batch(shape, DEVICE, dtype, g, memory_format=fmt)
    dy = torch.randn(shape, generator=g).to(DEVICE, dtype).contiguous(memory_format=fmt)
    weight = torch.randn(c, generator=g).to(DEVICE, param_dtype)
    bias = torch.randn(c, generator=g).to(DEVICE, param_dtype)
    rm = torch.randn(c, generator=g).to(DEVICE, param_dtype)
    rv = (torch.rand(c, generator=g) + 0.5).to(DEVICE, param_dtype)
    return x, dy, weight, bias, rm, rv


def _tols(dtype):
    """float32: 2 ulp-ish relative; float16/bfloat16: assert_close's defaults for the dtype."""
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}


def _compare(ours, ref, dtype, param_dtype, fmt):
    names = ("y", "dx", "dweight", "dbias", "running_mean", "running_var")
    for name, o, r in zip(names, ours, ref):
        if r is None:
            assert o is None, name
            continue
        assert o.dtype == r.dtype, name
        # sums over a batch in float32 agree to float32's precision; element-wise results to the
        # input dtype's
        tol = _tols(dtype if name in ("y", "dx") else param_dtype)
        assert_close(o, r, **tol, msg=lambda m: f"{name}: {m}")
    y, dx = ours[0], ours[1]
    assert y.is_contiguous(memory_format=fmt) and dx.is_contiguous(memory_format=fmt)


# --- parity with F.batch_norm ----------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("shape,fmt", LAYOUTS, ids=LAYOUT_IDS)
def test_functional_matches_torch(shape, fmt, dtype, training):
    """Outputs, the three gradients and the running buffers; float32 parameters (torch's mixed path)."""
    args = _inputs(shape, fmt, dtype, torch.float32, seed=LAYOUTS.index((shape, fmt)))
    _compare(_ours(*args, training), _reference(*args, training), dtype, torch.float32, fmt)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
def test_reduced_precision_parameters(dtype, training):
    """Parameters and buffers in the input's dtype: read and written in that dtype, summed in float32."""
    args = _inputs((4, 3, 5, 6), torch.channels_last, dtype, dtype, seed=3)
    ours = _ours(*args, training)
    ref = _reference(*args, training)
    assert all(t.dtype == dtype for t in ours[2:])
    _compare(ours, ref, dtype, dtype, torch.channels_last)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_native_half_output_within_one_ulp(training):
    """Against torch's own float16 kernel (not an upcast reference): y within 1 ulp."""
    x, dy, w, b, rm, rv = _inputs((5, 4, 3, 3), torch.contiguous_format, torch.float16,
                                  torch.float32, seed=5)
    y = btr.batch_norm(x, rm.clone(), rv.clone(), w, b, training)
    y_ref = F.batch_norm(x, rm.clone(), rv.clone(), w, b, training)
    assert_close(y, y_ref, rtol=2 ** -10, atol=2 ** -10)


@pytest.mark.parametrize("weight,bias", [(True, False), (False, True), (False, False)],
                         ids=["no-bias", "no-weight", "no-affine"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_without_weight_or_bias(weight, bias, training):
    x, dy, w, b, rm, rv = _inputs((4, 3, 5), torch.contiguous_format, torch.float32, torch.float32, 7)
    args = (x, dy, w if weight else None, b if bias else None, rm, rv)
    _compare(_ours(*args, training), _reference(*args, training), torch.float32, torch.float32,
             torch.contiguous_format)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_only_the_requested_gradients(training):
    """Each of x, weight, bias alone requiring grad gets the reference gradient, the others none."""
    x, dy, w, b, rm, rv = _inputs((4, 3, 2, 5), torch.channels_last, torch.float32,
                                  torch.float32, 9)
    _, dx_r, dw_r, db_r, _, _ = _reference(x, dy, w, b, rm, rv, training)
    for which, expected in ((0, dx_r), (1, dw_r), (2, db_r)):
        leaves = [x.clone(), w.clone(), b.clone()]
        leaves[which].requires_grad_()
        y = btr.batch_norm(leaves[0], rm.clone(), rv.clone(), leaves[1], leaves[2], training)
        (grad,) = torch.autograd.grad(y, leaves[which], dy)
        assert_close(grad, expected, rtol=1e-5, atol=1e-5)


def test_no_running_stats_and_momentum():
    """Training without buffers (batch statistics only) and with a momentum other than 0.1."""
    x, dy, w, b, rm, rv = _inputs((6, 4, 7), torch.contiguous_format, torch.float32, torch.float32, 2)
    _compare(_ours(x, dy, w, b, None, None, True), _reference(x, dy, w, b, None, None, True),
             torch.float32, torch.float32, torch.contiguous_format)
    _compare(_ours(x, dy, w, b, rm, rv, True, 0.7, 1e-3),
             _reference(x, dy, w, b, rm, rv, True, 0.7, 1e-3),
             torch.float32, torch.float32, torch.contiguous_format)


@pytest.mark.parametrize("shape,fmt", [((1000, 5), torch.contiguous_format),
                                       ((300, 70), torch.contiguous_format),
                                       ((40, 3, 7, 8), torch.contiguous_format)],
                         ids=["rows-split", "two-channel-blocks", "NCHW-split"])
def test_split_reductions_and_partial_tiles(shape, fmt):
    """Shapes whose reduction is split over several programs and whose tiles are cut at the edges."""
    x = torch.empty(shape, device=DEVICE).contiguous(memory_format=fmt)
    plan = _kernels.make_plan(Layout.of(x), x.device)
    assert plan.n_splits > 1 or plan.C > plan.block_c
    args = _inputs(shape, fmt, torch.float32, torch.float32, seed=4)
    _compare(_ours(*args, True), _reference(*args, True), torch.float32, torch.float32, fmt)


def test_strided_input_and_expanded_gradient():
    """An input that is neither contiguous nor channels_last (H and W strides swapped) is copied to a
    supported layout; a ``y.sum()`` gradient (an expanded, stride-0 ``dy``) gives torch's gradients."""
    g = torch.Generator().manual_seed(8)
    base = torch.randn(4, 3, 5, 4, generator=g).to(DEVICE)
    w = torch.randn(3, generator=g).to(DEVICE)
    b = torch.randn(3, generator=g).to(DEVICE)
    results = []
    for fn, reduce in ((btr.batch_norm, "square"), (F.batch_norm, "square"),
                       (btr.batch_norm, "sum"), (F.batch_norm, "sum")):
        x = base.clone().requires_grad_()
        strided = x.transpose(2, 3).contiguous().transpose(2, 3)
        assert not strided.is_contiguous() and not strided.is_contiguous(
            memory_format=torch.channels_last)
        wi, bi = w.clone().requires_grad_(), b.clone().requires_grad_()
        y = fn(strided, None, None, wi, bi, True)
        ((y * y).sum() if reduce == "square" else y.sum()).backward()
        results.append((y.detach(), x.grad, wi.grad, bi.grad))
    for ours, ref in ((results[0], results[1]), (results[2], results[3])):
        for o, r in zip(ours, ref):
            assert_close(o, r, rtol=1e-5, atol=1e-5)


# --- modules ---------------------------------------------------------------------------------------

def _make_pair(name, args, kwargs, seed=0):
    ref = TORCH_CLASSES[name](*args, **kwargs, device=DEVICE)
    ours = OURS[name](*args, **kwargs, device=DEVICE)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        if ref.running_var is not None:
            ref.running_mean.copy_(torch.randn(ref.num_features, generator=g))
            ref.running_var.copy_(torch.rand(ref.num_features, generator=g) + 0.5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_module_cases_match_torch_over_steps(case, training):
    """torch's ModuleInfo constructor/input combinations, two steps each, float32."""
    name, _, args, kwargs, shape = case
    ref, ours = _make_pair(name, args, kwargs)
    ref.train(training)
    ours.train(training)
    assert repr(ours) == repr(ref)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x = random_batch(shape, DEVICE, torch.float32, g)
        dy = torch.randn(shape, generator=g).to(DEVICE)
        step_and_compare(ref, ours, x, dy, {"rtol": 1e-5, "atol": 1e-5})
    compare_state(ref, ours, {"rtol": 1e-5, "atol": 1e-5})


def test_modules_reject_wrong_rank_like_torch():
    for ours, ref, x in ((btr.BatchNorm2d(3), torch.nn.BatchNorm2d(3), torch.zeros(2, 3, 4)),
                         (btr.BatchNorm1d(3), torch.nn.BatchNorm1d(3), torch.zeros(2, 3, 4, 4))):
        with pytest.raises(ValueError) as expected:
            ref(x)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            ours(x.to(DEVICE))


# --- numerically hard cases, against float64 -------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape,fmt", [((256, 3), torch.contiguous_format),
                                       ((16, 3, 4, 4), torch.contiguous_format),
                                       ((16, 3, 4, 4), torch.channels_last)],
                         ids=["NC", "NCHW", "NHWC"])
def test_large_offset_small_spread_float32(shape, fmt, seed):
    """float32 at offset 1e4, std 1e-2: y within 1e-2 of float64, statistics to float32 precision.

    The mean has ~5e-4 rounding error in float32 at 1e4, i.e. 5 % of a std; the output stays accurate
    because it is computed as ``(x - k) - (mean - k)`` with the shift ``k`` a value of the channel.
    """
    g = torch.Generator().manual_seed(seed)
    x = (1e4 + 1e-2 * torch.randn(shape, generator=g)).to(DEVICE).contiguous(memory_format=fmt)
    c = shape[1]
    rm, rv = torch.zeros(c, device=DEVICE), torch.ones(c, device=DEVICE)
    y = btr.batch_norm(x, rm, rv, None, None, True, 1.0)
    x64 = x.double()
    dims = (0, *range(2, x.dim()))
    view = (1, c) + (1,) * (x.dim() - 2)
    mean, var = x64.mean(dims), x64.var(dims, unbiased=False)
    y64 = (x64 - mean.view(view)) / (var.view(view) + 1e-5).sqrt()
    assert (y.double() - y64).abs().max() < 1e-2
    n = x.numel() // c
    assert_close(rv.double(), var * n / (n - 1), rtol=1e-4, atol=0)
    assert_close(rm.double(), mean, rtol=1e-7, atol=0)


@pytest.mark.parametrize("shape,fmt", [((3, 2, 4), torch.contiguous_format),
                                       ((3, 2, 2, 2), torch.channels_last), ((6, 2), torch.contiguous_format)],
                         ids=["NCL", "NHWC", "NC"])
def test_squares_that_overflow_float32(shape, fmt):
    """``randn * 1e30``: float32 squares overflow; the result is torch's float64 one (values near
    ±1), the running variance inf as torch's float32 buffer."""
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 1e30).contiguous(memory_format=fmt)
    rm, rv = torch.zeros(2, device=DEVICE), torch.ones(2, device=DEVICE)
    y = btr.batch_norm(x.to(DEVICE), rm, rv, training=True)
    truth = F.batch_norm(x.double(), None, None, training=True)
    torch.testing.assert_close(y.cpu().double(), truth, rtol=1e-5, atol=1e-5)
    ref_rm, ref_rv = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    F.batch_norm(x.double(), ref_rm, ref_rv, training=True)
    torch.testing.assert_close(rm.cpu(), ref_rm.float(), rtol=1e-5, atol=0)
    torch.testing.assert_close(rv.cpu(), ref_rv.float())            # inf: beyond float32's range


@pytest.mark.parametrize("where", [(0, 0, 0), (1, 0, 2)], ids=["first-value", "later-value"])
@pytest.mark.parametrize("special", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("momentum", [0.1, 1.0])
def test_special_values_in_running_statistics(special, where, momentum):
    """+inf in a channel: torch's running mean is inf, its running variance nan; nan: both nan."""
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    x[where] = special
    rm, rv = torch.zeros(2, device=DEVICE), torch.ones(2, device=DEVICE)
    y = btr.batch_norm(x.to(DEVICE), rm, rv, training=True, momentum=momentum)
    ref_rm, ref_rv = torch.zeros(2), torch.ones(2)
    ref = F.batch_norm(x, ref_rm, ref_rv, training=True, momentum=momentum)
    torch.testing.assert_close(rm.cpu(), ref_rm, equal_nan=True)
    torch.testing.assert_close(rv.cpu(), ref_rv, equal_nan=True)
    torch.testing.assert_close(y.cpu(), ref, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("shape,fmt", LAYOUTS[:5], ids=LAYOUT_IDS[:5])
def test_constant_channel_gives_exactly_bias(shape, fmt, dtype):
    c = shape[1]
    x = torch.full(shape, 7.3, dtype=dtype, device=DEVICE).contiguous(memory_format=fmt)
    x[:, 0] = -1e4 if dtype != torch.float16 else -300.0   # every channel constant, one far out
    x.requires_grad_()
    w = torch.linspace(0.5, 2, c, device=DEVICE, requires_grad=True)
    b = torch.linspace(-1.5, 0.25, c, device=DEVICE, requires_grad=True)
    rm, rv = torch.zeros(c, device=DEVICE), torch.ones(c, device=DEVICE)
    y = btr.batch_norm(x, rm, rv, w, b, True)
    view = (1, c) + (1,) * (len(shape) - 2)
    assert torch.equal(y, b.detach().to(dtype).view(view).expand(shape))
    assert torch.equal(rv, torch.full((c,), 0.9, device=DEVICE))
    y.backward(torch.randn(shape, device=DEVICE, dtype=dtype))
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()


# --- errors and the optional dependency ------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda f, x: f(x, torch.zeros(4), torch.ones(3), training=True),
    lambda f, x: f(x, None, None, training=False),
    lambda f, x: f(x[:1, :, :1], None, None, training=True),
    lambda f, x: f(x, None, None, torch.ones(3, dtype=torch.float16), training=True),
    lambda f, x: f(x, None, None, training=True, eps=0.0),
], ids=["buffer-size", "eval-without-stats", "one-value", "param-dtype", "eps"])
def test_errors_match_torch(call):
    x = torch.randn(4, 3, 5)
    with pytest.raises(Exception) as expected:
        call(F.batch_norm, x)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        call(btr.batch_norm, x.to(DEVICE))


def test_float64_is_refused_with_a_pointer():
    with pytest.raises(TypeError, match="bncourse.torch"):
        btr.batch_norm(torch.randn(4, 3, dtype=torch.float64, device=DEVICE), None, None,
                       training=True)


def test_double_backward_raises():
    x = torch.randn(4, 3, device=DEVICE, requires_grad=True)
    y = btr.batch_norm(x, None, None, training=True)
    dy = torch.randn_like(y, requires_grad=True)
    (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|marked with"):
        dx.sum().backward()


def test_package_imports_without_triton_and_says_how_to_get_it():
    """With ``triton`` unimportable: the package imports, is_available() is False, a call says
    ``pip install triton`` in an ImportError, and bncourse.torch still works."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, bncourse.triton as bt, bncourse.torch\n"
        "assert not bt.is_available()\n"
        "bncourse.torch.BatchNorm1d(3)(torch.randn(4, 3))\n"
        "try:\n"
        "    bt.BatchNorm1d(3)(torch.randn(4, 3))\n"
        "except ImportError as e:\n"
        "    assert 'pip install triton' in str(e), e; print('OK', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("OK"), out.stderr


# --- GPU only: the benchmark shapes, compiled ------------------------------------------------------

BENCH_SHAPES = [(256, 1024), (4096, 1024), (60, 100), (64, 64, 32, 32), (32, 256, 14, 14)]


@pytest.mark.cuda
@pytest.mark.skipif(DEVICE != "cuda", reason="large shapes run compiled on a GPU only")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", BENCH_SHAPES, ids=[str(s) for s in BENCH_SHAPES])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_benchmark_shapes_match_torch_on_gpu(shape, channels_last, dtype, training):
    if channels_last and len(shape) != 4:
        pytest.skip("channels_last needs a 4-D input")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    args = _inputs(shape, fmt, dtype, torch.float32, seed=0)
    _compare(_ours(*args, training), _reference(*args, training), dtype, torch.float32, fmt)



def test_benchmark_script_smoke(tmp_path):
    """``benchmarks/bench_triton.py --device cpu --interpret --smoke`` runs and writes its results."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_triton.py"),
                          "--device", "cpu", "--interpret", "--smoke", "--repeats", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    (result,) = tmp_path.glob("triton_*.json")
    data = json.loads(result.read_text())
    assert data["environment"]["interpreted"] and data["environment"]["triton"]
    names = {r["implementation"] for r in data["rows"]}
    assert names == {"bncourse.triton", "torch native", "bncourse.torch"}
    layouts = {(tuple(r["shape"]), r["layout"], r["dtype"]) for r in data["rows"]}
    assert len(layouts) == 6        # (32, 4) x 2 dtypes; (2, 4, 3, 3) x 2 layouts x 2 dtypes
    assert (tmp_path / result.name.replace(".json", ".md")).exists()


def test_kernels_compile_for_a_gpu_with_vector_loads():
    """Every kernel variant compiles for sm_90 (Triton's compiler and ptxas run on a CPU) and loads
    its data 16 bytes at a time, in both layouts and dtypes (``tests/core/triton_compile_check.py``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(here)),
           "TRITON_DEFAULT_FP_FUSION": "1"}
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, os.path.join(here, "triton_compile_check.py")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("OK"), out.stdout + out.stderr
