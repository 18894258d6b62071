"""Bad input to ``bncourse.torch`` raises exactly what torch raises: same exception type, same
``str(exc)``. The functional cases every backend shares are in ``test_errors.py``; here are the
module's, the parser's and the documented differences (non-empty input of rank < 2, non-tensor
input).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bncourse.torch as bt
from cases import outcome
from torch_compat import needs_213_eps_wording

torch.set_num_threads(1)

X = lambda *s, dtype=torch.float32: torch.randn(*s).to(dtype)  # noqa: E731
Z, O = torch.zeros, torch.ones
L, D = torch.long, torch.float64


def assert_same_error(torch_fn, our_fn):
    expected = outcome(torch_fn)
    assert expected is not None, "torch accepted this input; the case is wrong"
    assert outcome(our_fn) == expected


@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("training", [True, False])
def test_running_stats_requiring_grad_raise_like_torch(which, training):
    x = X(4, 3)

    def args():
        rm, rv = Z(3), O(3)
        (rm if which == "running_mean" else rv).requires_grad_()
        return x, rm, rv
    assert_same_error(lambda: F.batch_norm(*args(), training=training),
                      lambda: bt.batch_norm(*args(), training=training))
    with torch.no_grad():   # like torch: allowed when no graph is recorded
        assert_close_outputs(F.batch_norm(*args(), training=training),
                             bt.batch_norm(*args(), training=training))


def assert_close_outputs(a, b):
    torch.testing.assert_close(b, a)


def test_momentum_none_in_functional_is_a_type_error():
    assert_same_error(lambda: F.batch_norm(X(4, 3), Z(3), O(3), training=True, momentum=None),
                      lambda: bt.batch_norm(X(4, 3), Z(3), O(3), training=True, momentum=None))


def test_non_tensor_arguments():
    assert_same_error(lambda: F.batch_norm(X(4, 3), [0.0] * 3, O(3), training=True),
                      lambda: bt.batch_norm(X(4, 3), [0.0] * 3, O(3), training=True))
    assert_same_error(lambda: F.batch_norm(X(4, 3), Z(3), O(3), 1.0, training=True),
                      lambda: bt.batch_norm(X(4, 3), Z(3), O(3), 1.0, training=True))
    assert_same_error(lambda: F.batch_norm(3.0, Z(3), O(3)), lambda: bt.batch_norm(3.0, Z(3), O(3)))
    # torch raises AttributeError ('list' object has no attribute 'size') in training; ours TypeError
    assert outcome(lambda: bt.batch_norm([[1.0]], None, None, training=True)) == (
        TypeError, "batch_norm(): argument 'input' (position 1) must be Tensor, not list")


@pytest.mark.parametrize("training", [True, False])
def test_rank_one_input_gets_a_clear_value_error(training):
    """torch reads past the shape of a 1-D input (``running_mean should contain 0 elements not 5``
    or an IndexError); bncourse says what is wrong. Empty 1-D input works like torch (OpInfo)."""
    x = X(5)
    assert outcome(lambda: F.batch_norm(x, Z(5), O(5), training=training)) is not None
    assert outcome(lambda: bt.batch_norm(x, Z(5), O(5), training=training)) == (
        ValueError, "expected at least 2D input (got 1D input)")
    empty = X(0)
    torch.testing.assert_close(bt.batch_norm(empty, Z(0), O(0), training=training),
                               F.batch_norm(empty, Z(0), O(0), training=training))


MODULES = [(nn.BatchNorm1d, bt.BatchNorm1d, (2, 3), [(4, 10, 2, 2), (10,), (4, 10, 3, 3, 3)]),
           (nn.BatchNorm2d, bt.BatchNorm2d, (4,), [(4, 10), (4, 10, 3), (4, 10, 3, 3, 3)]),
           (nn.BatchNorm3d, bt.BatchNorm3d, (5,), [(4, 10), (4, 10, 3), (4, 10, 3, 3)])]


@pytest.mark.parametrize("ref_cls,our_cls,_,bad_shapes", MODULES, ids=["1d", "2d", "3d"])
def test_module_rank_errors(ref_cls, our_cls, _, bad_shapes):
    for shape in bad_shapes:
        for mode in (True, False):
            assert_same_error(lambda: ref_cls(10).train(mode)(X(*shape)),
                              lambda: our_cls(10).train(mode)(X(*shape)))


GOOD_SHAPES = {"1d": (2, 10), "2d": (2, 10, 5, 5), "3d": (2, 10, 4, 4, 4)}


@pytest.mark.parametrize("ref_cls,our_cls,_,__", MODULES, ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("eps", [-1.0, 0.0])
@needs_213_eps_wording
def test_module_eps_errors(ref_cls, our_cls, _, __, eps):
    """module_error_inputs_torch_nn_BatchNorm1d_2d_3d; eps=0 is fine in eval with running stats."""
    shape = GOOD_SHAPES[{nn.BatchNorm1d: "1d", nn.BatchNorm2d: "2d", nn.BatchNorm3d: "3d"}[ref_cls]]
    x = X(*shape)
    assert_same_error(lambda: ref_cls(10, eps=eps)(x), lambda: our_cls(10, eps=eps)(x))
    assert "eps must be" in outcome(lambda: our_cls(10, eps=eps)(x))[1]
    ev_ref, ev_ours = outcome(lambda: ref_cls(10, eps=eps).eval()(x)), \
        outcome(lambda: our_cls(10, eps=eps).eval()(x))
    assert ev_ours == ev_ref


@pytest.mark.parametrize("training", [True, False])
def test_module_one_value_per_channel(training):
    """Training always; eval too when track_running_stats=False (batch statistics)."""
    x = torch.rand(10)[None, :, None]
    for kwargs in ({}, {"track_running_stats": False}):
        ref, ours = nn.BatchNorm1d(10, **kwargs), bt.BatchNorm1d(10, **kwargs)
        ref.train(training)
        ours.train(training)
        expected = outcome(lambda: ref(x))
        assert outcome(lambda: ours(x)) == expected
        if training or kwargs:
            assert expected is not None
        if ref.num_batches_tracked is not None:   # torch counts the batch before it raises
            assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)


def test_module_channel_mismatch_and_dtype():
    assert_same_error(lambda: nn.BatchNorm1d(4, track_running_stats=False)(X(2, 3)),
                      lambda: bt.BatchNorm1d(4, track_running_stats=False)(X(2, 3)))
    assert_same_error(lambda: nn.BatchNorm1d(4)(X(2, 3)), lambda: bt.BatchNorm1d(4)(X(2, 3)))
    assert_same_error(lambda: nn.BatchNorm1d(3)(X(2, 3, dtype=L)),
                      lambda: bt.BatchNorm1d(3)(X(2, 3, dtype=L)))
    assert_same_error(lambda: nn.BatchNorm1d(3)(X(2, 3, dtype=D)),
                      lambda: bt.BatchNorm1d(3)(X(2, 3, dtype=D)))


def test_constructor_errors_match_torch():
    for args, kwargs in (((-1,), {}), ((3.0,), {}), ((3,), {"dtype": torch.long})):
        assert_same_error(lambda: nn.BatchNorm2d(*args, **kwargs),
                          lambda: bt.BatchNorm2d(*args, **kwargs))
