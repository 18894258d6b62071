"""The normalization family gets BatchNorm's hardening: the same numerics, errors and shapes as torch.

Every layer takes its statistics from one shifted-moments helper and moves its running buffers with one
update (``bncourse.torch._moments``; the NumPy layers mirror it), so each class of difference below
is tested once per layer and backend: squares that overflow float32, data with a large offset and a
small spread, infinite running statistics, then torch's errors, memory formats and gradients of
edge cases. (SyncBatchNorm over two ranks: ``test_sync_batchnorm.py``; Triton: ``test_triton.py``.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bncourse.numpy as bnp
import bncourse.torch as bt

torch.set_num_threads(1)

INF, NAN = float("inf"), float("nan")


def _raises_as_torch(ours, theirs) -> None:
    """Both calls raise the same exception type with the same text."""
    with pytest.raises(Exception) as ref:
        theirs()
    with pytest.raises(Exception) as got:
        ours()
    assert (type(got.value), str(got.value)) == (type(ref.value), str(ref.value))


# --- 1. squares that overflow float32 ------------------------------------------------------------

HUGE = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0)) * 1e30


@pytest.mark.parametrize("layer", ["layer_norm", "group_norm", "instance_norm", "rms_norm"])
def test_overflowing_squares_are_normalized_torch(layer):
    """float32 values near 1e30: their squares overflow; torch in float64 gives values near ±1."""
    args = {"layer_norm": ((4,),), "group_norm": (1,), "instance_norm": (), "rms_norm": ((4,),)}[layer]
    got = getattr(bt, layer)(HUGE, *args)
    expected = getattr(F, layer)(HUGE.double(), *args)
    assert got.abs().max() > 0.5                 # not the silent zeros of an overflowed variance
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: bnp.LayerNorm(4), lambda: bnp.GroupNorm(1, 2),
                                  lambda: bnp.InstanceNorm(2), lambda: bnp.RMSNorm(4)],
                         ids=["LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm"])
def test_overflowing_squares_are_normalized_numpy(make):
    layer = make()
    ref = {bnp.LayerNorm: lambda x: F.layer_norm(x, (4,)), bnp.GroupNorm: lambda x: F.group_norm(x, 1),
           bnp.InstanceNorm: F.instance_norm, bnp.RMSNorm: lambda x: F.rms_norm(x, (4,))}[type(layer)]
    got = layer(HUGE.numpy())
    assert got.dtype == np.float32 and np.abs(got).max() > 0.5
    np.testing.assert_allclose(got, ref(HUGE.double()).numpy(), rtol=1e-5, atol=1e-5)


def test_overflowing_squares_backward_layer_norm():
    x = HUGE.clone().requires_grad_()
    x64 = HUGE.double().requires_grad_()
    dy = torch.randn(HUGE.shape, generator=torch.Generator().manual_seed(1))
    (g,) = torch.autograd.grad(bt.layer_norm(x, (4,)), x, dy)
    (e,) = torch.autograd.grad(F.layer_norm(x64, (4,)), x64, dy.double())
    torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-35)


# --- 2. a large offset and a small spread --------------------------------------------------------

OFFSET = (9999.99 + torch.tensor([0.0, 0.005, 0.013, 0.02], dtype=torch.float64)).float()


def test_offset_data_layer_norm():
    """Four float32 values near 9 999.99 spread over 0.02: torch is within 0.0024 of float64."""
    x = OFFSET.reshape(1, 4)
    truth = F.layer_norm(x.double(), (4,))
    torch_err = (F.layer_norm(x, (4,)).double() - truth).abs().max()
    ours = (bt.layer_norm(x, (4,)).double() - truth).abs().max()
    numpy = np.abs(bnp.LayerNorm(4)(x.numpy()) - truth.numpy()).max()
    assert ours < min(torch_err, 1e-4) and numpy < min(torch_err, 1e-4)


@pytest.mark.parametrize("layer", ["group_norm", "instance_norm"])
def test_offset_data_group_and_instance_norm(layer):
    x = OFFSET.reshape(1, 1, 4)
    args = (1,) if layer == "group_norm" else ()
    truth = getattr(F, layer)(x.double(), *args)
    assert (getattr(bt, layer)(x, *args).double() - truth).abs().max() < 1e-4


def test_offset_data_batch_renorm_as_batchnorm():
    """r_max = 1, d_max = 0 is BatchNorm: as accurate as bncourse's own BN (1e-7)."""
    x = OFFSET.reshape(4, 1)
    truth = F.batch_norm(x.double(), None, None, training=True)
    y = bt.batch_renorm(x, torch.zeros(1), torch.ones(1), training=True, r_max=1.0, d_max=0.0)
    assert (y.double() - truth).abs().max() < 1e-5


# --- 3. running statistics and infinity ----------------------------------------------------------

@pytest.mark.parametrize("momentum", [None, 0.1, 0.5, 1.0])
def test_batch_renorm_inf_running_mean_is_torchs(momentum):
    """BatchRenorm updates its buffers as torch's BatchNorm: +inf in a channel gives running_mean inf."""
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    x[1, 0] = INF
    ours = bt.BatchRenorm1d(2, momentum=momentum, r_max=1.0, d_max=0.0)
    ref = nn.BatchNorm1d(2, momentum=momentum)
    ours(x)
    ref(x)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, equal_nan=True)
    torch.testing.assert_close(ours.running_var, ref.running_var, equal_nan=True)
    assert ours.running_mean[0] == INF


@pytest.mark.parametrize("special", [INF, NAN])
def test_instance_norm_special_running_statistics(special):
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(3))
    x[0, 1, 2] = special
    ours, ref = bt.InstanceNorm1d(3, track_running_stats=True), nn.InstanceNorm1d(3, track_running_stats=True)
    torch.testing.assert_close(ours(x), ref(x), equal_nan=True)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, equal_nan=True)
    torch.testing.assert_close(ours.running_var, ref.running_var, equal_nan=True)


def test_one_running_update_everywhere():
    """Every layer moves its buffers with the same helper (no lerp anywhere)."""
    import inspect

    from bncourse.torch import functional, norm_functional, renorm, sync
    for module in (functional, norm_functional, renorm, sync):
        assert "lerp" not in inspect.getsource(module).replace("not ``lerp``", "")


# --- 4. GroupNorm errors -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 4), (1, 4, 1), (1, 4, 1, 1)])
def test_group_norm_one_value_per_group(shape):
    """torch: ``ValueError: Expected more than 1 value per channel when training, got input size
    [1, 4]`` for the module (in either mode), the functional form and, here, NumPy."""
    x = torch.randn(shape)
    _raises_as_torch(lambda: bt.group_norm(x, 4), lambda: F.group_norm(x, 4))
    for training in (True, False):
        _raises_as_torch(lambda: bt.GroupNorm(4, 4).train(training)(x),
                         lambda: nn.GroupNorm(4, 4).train(training)(x))
        _raises_as_torch(lambda: bnp.GroupNorm(4, 4).train(training)(x.numpy()),
                         lambda: nn.GroupNorm(4, 4).train(training)(x))


@pytest.mark.parametrize("num_groups,shape", [(-2, (2, 4)), (-2, (2, 3)), (-4, (1, 4)), (0, (2, 4))])
def test_group_norm_bad_num_groups(num_groups, shape):
    x = torch.randn(shape)
    _raises_as_torch(lambda: bt.group_norm(x, num_groups), lambda: F.group_norm(x, num_groups))


# --- 5. GroupNorm's dx for channels_last input ---------------------------------------------------

@pytest.mark.parametrize("shape,fmt", [((2, 4, 3, 2), torch.channels_last),
                                       ((2, 4, 2, 3, 2), torch.channels_last_3d)])
def test_group_norm_channels_last_dx(shape, fmt):
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    dy = torch.randn(shape, dtype=torch.float64)
    (got,) = torch.autograd.grad(bt.group_norm(x, 2), x, dy)
    (ref,) = torch.autograd.grad(F.group_norm(x, 2), x, dy)
    assert got.stride() == ref.stride()
    torch.testing.assert_close(got, ref)


# --- 6. zero-size input --------------------------------------------------------------------------

def test_instance_norm_zero_size_parameter_gradients():
    """torch's parameter gradients on a zero-size input are zeros, not None."""
    grads = []
    for fn in (bt.instance_norm, F.instance_norm):
        x = torch.zeros(2, 3, 0, requires_grad=True)
        w, b = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
        grads.append(torch.autograd.grad(fn(x, weight=w, bias=b).sum(), [x, w, b], allow_unused=True))
    for got, ref in zip(*grads):
        assert got is not None
        torch.testing.assert_close(got, ref)


def test_numpy_instance_norm_zero_size_keeps_running_statistics():
    layer = bnp.InstanceNorm(3, track_running_stats=True)
    layer.running_mean[...] = [1.0, 2.0, 3.0]
    with np.errstate(all="ignore"):
        layer(np.zeros((2, 3, 0), np.float32))
    np.testing.assert_array_equal(layer.running_mean, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(layer.running_var, [1.0, 1.0, 1.0])


# --- 7. argument types ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda m: m.LayerNorm("12"), lambda m: m.LayerNorm((3.5,)),
                                  lambda m: m.RMSNorm(["4"]), lambda m: m.LayerNorm(True),
                                  lambda m: m.LayerNorm((2, 3.5)), lambda m: m.RMSNorm((2, np.float64(3))),
                                  lambda m: m.LayerNorm((torch.tensor(3.0),))],
                         ids=["str", "float", "str-list", "bool", "second-float", "numpy-float",
                              "float-tensor"])
def test_normalized_shape_elements_must_be_ints(make):
    for ours in (bt, bnp):
        _raises_as_torch(lambda: make(ours), lambda: make(nn))


def test_normalized_shape_integers_as_torch():
    """What torch's parser takes: NumPy integers, integer 0-d tensors, a bool after the first."""
    for shape in [(np.int64(3),), (torch.tensor(3),), (2, True), torch.Size([2, 3]), range(1, 3)]:
        assert bt.LayerNorm(shape).weight.shape == nn.LayerNorm(shape).weight.shape


@pytest.mark.parametrize("call", [
    lambda f, x: f.layer_norm(x, (3,), eps="a"),
    lambda f, x: f.layer_norm(x, (3,), eps=None),
    lambda f, x: f.rms_norm(x, (3,), eps="a"),
    lambda f, x: f.group_norm(x, 3, eps="a"),
    lambda f, x: f.instance_norm(x.unsqueeze(-1).expand(2, 3, 2), eps="a"),
    lambda f, x: f.instance_norm(x.unsqueeze(-1).expand(2, 3, 2), momentum=[0.1]),
], ids=["layer_norm-eps-str", "layer_norm-eps-None", "rms_norm-eps", "group_norm-eps",
        "instance_norm-eps", "instance_norm-momentum"])
def test_float_arguments_get_the_parsers_type_error(call):
    x = torch.randn(2, 3)
    _raises_as_torch(lambda: call(bt, x), lambda: call(F, x))


@pytest.mark.parametrize("use_input_stats", [False, True])
@pytest.mark.parametrize("which", ["running_mean", "running_var", "weight"])
def test_instance_norm_per_channel_tensors_must_be_vectors(which, use_input_stats):
    """A ``(3, 1)`` buffer has the right element count but not torch's shape: torch fails in
    ``Tensor.repeat``."""
    x = torch.randn(2, 3, 4)
    kwargs = {"running_mean": torch.zeros(3), "running_var": torch.ones(3), "weight": torch.ones(3)}
    kwargs[which] = kwargs[which].reshape(3, 1)
    _raises_as_torch(lambda: bt.instance_norm(x, use_input_stats=use_input_stats, **kwargs),
                     lambda: F.instance_norm(x, use_input_stats=use_input_stats, **kwargs))


# --- 8. BatchRenorm's output memory format -------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, 5).t(),                                       # a transposed (N, C)
    lambda: torch.randn(2, 4, 3, 5).permute(0, 1, 3, 2),                 # a permuted 4-D view
    lambda: torch.randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last),
    lambda: torch.randn(2, 3, 4, 5)[:, :, ::2],                          # a stepped slice
], ids=["transposed", "permuted", "channels_last", "stepped"])
def test_batch_renorm_output_format_is_batchnorms(make):
    x = make()
    c = x.shape[1]
    layer = (bt.BatchRenorm1d if x.dim() < 4 else bt.BatchRenorm2d)(c, r_max=1.0, d_max=0.0)
    ref = (nn.BatchNorm1d if x.dim() < 4 else nn.BatchNorm2d)(c)
    y, e = layer(x), ref(x)
    assert y.stride() == e.stride()
    torch.testing.assert_close(y, e)


# --- 10. evaluation-mode double backward without weight ------------------------------------------

def test_eval_double_backward_without_weight():
    """torch's dx carries a graph that reaches no input: the second grad is None (zeros when
    materialized), and an error without ``allow_unused``."""
    results = []
    for fn in (F.batch_norm, bt.batch_norm):
        x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        y = fn(x, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), training=False)
        (dx,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
        assert dx.requires_grad
        unused = torch.autograd.grad(dx.sum(), x, allow_unused=True, retain_graph=True)
        zeros = torch.autograd.grad(dx.sum(), x, materialize_grads=True, retain_graph=True)
        with pytest.raises(RuntimeError) as err:
            torch.autograd.grad(dx.sum(), x)
        results.append((unused, zeros, str(err.value)))
    (u_ref, z_ref, e_ref), (u, z, e) = results
    assert u == u_ref == (None,)
    torch.testing.assert_close(z, z_ref)
    assert e == e_ref
