"""Bad input to bncourse.numpy: same exception type and wording as torch (sizes written (1, 3)).

Where torch raises on the same input, the test takes torch's actual message and compares.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_compat import needs_213_eps_wording

from bncourse.numpy import BatchNorm, batchnorm_backward, batchnorm_backward_staged, batchnorm_forward

torch.set_num_threads(1)


def torch_error(fn: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def numpy_style(message: str) -> str:
    """torch.Size([1, 3]) -> (1, 3), the NumPy path's spelling."""
    return re.sub(r"torch\.Size\(\[([^\]]*)\]\)", r"(\1)", message)


def assert_same_error(ours: Callable[[], object], theirs: Callable[[], object]) -> None:
    expected = torch_error(theirs)
    with pytest.raises(type(expected)) as info:
        ours()
    assert type(info.value) is type(expected)
    assert str(info.value) == numpy_style(str(expected))


def t(a):
    return None if a is None else torch.from_numpy(np.array(a, copy=True))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1), (1, 10, 1)])
def test_one_value_per_channel_in_training(shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    assert_same_error(lambda: batchnorm_forward(x, None, None, None, None, training=True),
                      lambda: F.batch_norm(t(x), None, None, training=True))
    bn = BatchNorm(shape[1])
    tbn = torch.nn.BatchNorm1d(shape[1]) if len(shape) <= 3 else torch.nn.BatchNorm2d(shape[1])
    assert_same_error(lambda: bn(x), lambda: tbn(t(x)))
    # torch's module counts the batch before F.batch_norm rejects it, and so does ours
    assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == 1


def test_one_value_per_channel_is_fine_in_eval_and_with_more_values():
    x = np.random.default_rng(0).random((1, 3), dtype=np.float32)
    y, _ = batchnorm_forward(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32),
                             training=False)
    assert y.shape == (1, 3)
    batchnorm_forward(np.ones((1, 3, 2), np.float32), None, None, None, None, training=True)


def test_one_value_per_channel_fires_in_eval_without_running_stats():
    x = np.ones((1, 3), np.float32)
    bn = BatchNorm(3, track_running_stats=False).eval()
    tbn = torch.nn.BatchNorm1d(3, track_running_stats=False).eval()
    assert_same_error(lambda: bn(x), lambda: tbn(t(x)))


@pytest.mark.parametrize("training", [True, False])
def test_functional_one_dimensional_empty_input_is_rejected(training):
    """OpInfo's ``(0,)`` samples: torch returns an empty tensor for a 1-D empty input (it has no
    channel axis); the NumPy path refuses every input below 2-D with the module's message."""
    assert F.batch_norm(torch.zeros(0), torch.zeros(0), torch.ones(0), training=training).shape == (0,)
    with pytest.raises(ValueError, match=r"^expected at least 2D input \(got 1D input\)$"):
        batchnorm_forward(np.zeros(0), None, None, np.zeros(0), np.ones(0), training=training)


@pytest.mark.parametrize("ndim", [0, 1])
def test_rank_below_two(ndim):
    x = np.ones((4,) * ndim, np.float32)
    sync_bn = torch.nn.SyncBatchNorm(4)        # torch's "any rank >= 2" module check
    assert_same_error(lambda: batchnorm_forward(x, None, None, None, None, training=True),
                      lambda: sync_bn._check_input_dim(t(x)))
    assert_same_error(lambda: BatchNorm(4)(x), lambda: sync_bn._check_input_dim(t(x)))


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
@pytest.mark.parametrize("size", [2, 4])
def test_channel_count_mismatch(name, size):
    rng = np.random.default_rng(0)
    x = rng.random((5, 3), dtype=np.float32)
    args = {"weight": np.ones(3, np.float32), "bias": np.zeros(3, np.float32),
            "running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}
    args[name] = np.ones(size, np.float32)
    assert_same_error(
        lambda: batchnorm_forward(x, args["weight"], args["bias"], args["running_mean"],
                                  args["running_var"], training=True),
        lambda: F.batch_norm(t(x), t(args["running_mean"]), t(args["running_var"]),
                             t(args["weight"]), t(args["bias"]), training=True))


def test_sizes_are_checked_before_the_both_or_neither_rule_like_torch():
    """A wrong-size running_mean without running_var: torch reports the size first."""
    x = np.ones((4, 3), np.float32)
    rm = np.zeros(4, np.float32)
    assert_same_error(lambda: batchnorm_forward(x, None, None, rm, None, training=True),
                      lambda: F.batch_norm(t(x), t(rm), None, training=True))


def test_half_input_dtype_rule_looks_at_weight_first_like_torch():
    """float16 input, float32 buffers, float16 weight: torch compares the input with the weight first."""
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float16)
    rm, rv, w = np.zeros(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float16)
    assert_same_error(lambda: batchnorm_forward(x, w, None, rm, rv, training=True),
                      lambda: F.batch_norm(t(x), t(rm), t(rv), t(w), None, training=True))


def test_channel_count_check_order_like_torch():
    """running_mean is checked first; without buffers the weight reports the mismatch."""
    x = np.ones((2, 3), np.float32)
    bn, tbn = BatchNorm(4), torch.nn.BatchNorm1d(4)
    assert_same_error(lambda: bn(x), lambda: tbn(t(x)))
    bn, tbn = BatchNorm(4, track_running_stats=False), torch.nn.BatchNorm1d(4, track_running_stats=False)
    assert_same_error(lambda: bn(x), lambda: tbn(t(x)))


@pytest.mark.parametrize("eps,training", [(0.0, True), (-1.0, True), (-1.0, False), (-1e-3, False)])
@needs_213_eps_wording
def test_eps_rules(eps, training):
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    assert_same_error(
        lambda: batchnorm_forward(x, None, None, rm, rv, training=training, eps=eps),
        lambda: F.batch_norm(t(x), t(rm), t(rv), training=training, eps=eps))


@pytest.mark.parametrize("shape", [(2, 10), (2, 10, 5, 5), (2, 10, 4, 4, 4)])
@pytest.mark.parametrize("eps", [-1.0, 0.0])
def test_module_error_inputs(shape, eps):
    """ModuleInfo's module_error_inputs_torch_nn_BatchNorm1d_2d_3d."""
    with pytest.raises(ValueError, match="eps must be positive"):
        BatchNorm(10, eps=eps)(np.ones(shape, np.float32))


def test_eps_zero_allowed_in_eval():
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    y, _ = batchnorm_forward(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32),
                             training=False, eps=0.0)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.bool_,
                                   np.complex64, np.complex128])
def test_unsupported_input_dtypes(dtype):
    x = np.ones((4, 3), dtype)
    assert_same_error(lambda: batchnorm_forward(x, None, None, None, None, training=True),
                      lambda: F.batch_norm(torch.from_numpy(x), None, None, training=True))


def test_object_dtype_has_torch_wording():
    x = np.empty((4, 3), object)
    with pytest.raises(NotImplementedError, match=r"^\"batch_norm\" not implemented for 'object'$"):
        batchnorm_forward(x, None, None, None, None, training=True)


@pytest.mark.parametrize("x_dtype,p_dtype,training", [
    (np.float64, np.float32, True), (np.float32, np.float64, True), (np.float32, np.float64, False),
    (np.float16, np.float64, True)])
def test_mixed_dtypes(x_dtype, p_dtype, training):
    x = np.random.default_rng(0).random((4, 3)).astype(x_dtype)
    rm, rv, w = np.zeros(3, p_dtype), np.ones(3, p_dtype), np.ones(3, p_dtype)
    assert_same_error(
        lambda: batchnorm_forward(x, w, None, rm, rv, training=training),
        lambda: F.batch_norm(t(x), t(rm), t(rv), t(w), training=training))


def test_integer_weight_with_float_input():
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    w = np.ones(3, np.int64)
    assert_same_error(lambda: batchnorm_forward(x, w, None, None, None, training=True),
                      lambda: F.batch_norm(t(x), None, None, t(w), training=True))


def test_eval_needs_running_stats():
    x = np.ones((4, 3), np.float32)
    assert_same_error(lambda: batchnorm_forward(x, None, None, None, None, training=False),
                      lambda: F.batch_norm(t(x), None, None, training=False))
    rm = np.zeros(3, np.float32)
    assert_same_error(lambda: batchnorm_forward(x, None, None, rm, None, training=False),
                      lambda: F.batch_norm(t(x), t(rm), None, training=False))


def test_running_stats_both_or_neither():
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    rm = np.zeros(3, np.float32)
    assert_same_error(lambda: batchnorm_forward(x, None, None, rm, None, training=True),
                      lambda: F.batch_norm(t(x), t(rm), None, training=True))


@pytest.mark.parametrize("bad,name", [([[1.0, 2.0], [3.0, 4.0]], "x"), (torch.ones(2, 2), "x")])
def test_non_array_input_is_a_type_error(bad, name):
    with pytest.raises(TypeError, match=rf"^{name} must be a numpy.ndarray, got "):
        batchnorm_forward(bad, None, None, None, None, training=True)


def test_non_array_parameter_is_a_type_error():
    with pytest.raises(TypeError, match=r"^weight must be a numpy.ndarray or None, got list$"):
        batchnorm_forward(np.ones((4, 2)), [1.0, 1.0], None, None, None, training=True)


def test_parameter_must_be_one_dimensional():
    with pytest.raises(ValueError, match=r"^weight must be 1-D with 3 elements, got shape \(1, 3\)$"):
        batchnorm_forward(np.ones((4, 3)), np.ones((1, 3)), None, None, None, training=True)


def test_momentum_none_needs_the_counter():
    x = np.random.default_rng(0).random((4, 3))
    with pytest.raises(ValueError, match="momentum=None .* needs num_batches_tracked"):
        batchnorm_forward(x, None, None, np.zeros(3), np.ones(3), training=True, momentum=None)


@pytest.mark.parametrize("counter", [3, np.array([0]), np.array(0.0)])
def test_counter_must_be_a_0d_integer_array(counter):
    x = np.random.default_rng(0).random((4, 3))
    with pytest.raises(TypeError, match="num_batches_tracked must be a 0-d integer numpy array"):
        batchnorm_forward(x, None, None, np.zeros(3), np.ones(3), training=True,
                          num_batches_tracked=counter)


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_staged])
def test_backward_checks_dy(backward):
    x = np.random.default_rng(0).random((4, 3))
    _, cache = batchnorm_forward(x, None, None, None, None, training=True)
    with pytest.raises(ValueError, match=r"^dy must have the forward input's shape \(4, 3\), got \(3, 4\)$"):
        backward(np.ones((3, 4)), cache)
    with pytest.raises(TypeError, match="^dy must be a numpy.ndarray"):
        backward([[0.0] * 3] * 4, cache)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        backward(np.ones((4, 3), np.int64), cache)


def test_layer_backward_before_forward():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        BatchNorm(3).backward(np.ones((4, 3)))
