"""The tuned NumPy path (``bncourse.numpy._fast``, behind ``BatchNorm``) against the plain functions
the chapters show (``bncourse.numpy.functional``): same results, same errors, same buffer updates.

The plain path computes in float64; the tuned path in the input's dtype (float32 for float16).
float64 input is compared at ``FLOAT64_PARITY``; float32 / float16 at 2 ulp of the result plus
the rounding of the computation times the data's condition (``tolerances``).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.numpy import _fast, batchnorm_backward, batchnorm_forward
from tolerances import FLOAT64_PARITY

SHAPES = [(2, 3), (60, 100), (130, 4), (4, 3, 5), (8, 3, 4, 4), (3, 2, 0, 4), (0, 3), (5, 2, 3, 2, 2)]
_TOL = {np.float64: FLOAT64_PARITY, np.float32: {"rtol": 1e-5, "atol": 1e-5},
        np.float16: {"rtol": 2e-3, "atol": 2e-3}}


def _both(x, dy, w, b, rm, rv, training, **kw):
    """``(y, dx, dw, db, rm, rv)`` of the plain and of the tuned path on copies of the buffers."""
    out = []
    for forward, backward in ((batchnorm_forward, batchnorm_backward), (_fast.forward, _fast.backward)):
        rm_, rv_ = (None, None) if rm is None else (rm.copy(), rv.copy())
        y, cache = forward(x, w, b, rm_, rv_, training=training, **kw)
        out.append((y,) + tuple(backward(dy, cache)) + (rm_, rv_))
    return out


def _assert_same(plain, tuned, dtype):
    for name, p, t in zip(("y", "dx", "dweight", "dbias", "running_mean", "running_var"), plain, tuned):
        assert (p is None) == (t is None), name
        if p is not None:
            assert p.dtype == t.dtype and p.shape == t.shape, name
            np.testing.assert_allclose(t, p, err_msg=name, equal_nan=True, **_TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_tuned_path_matches_the_plain_functions(shape, training, dtype):
    rng = np.random.default_rng(sum(shape) + 7 * training)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    pdt = np.float32 if dtype == np.float16 else dtype
    w, b = rng.uniform(0.5, 2, c).astype(pdt), rng.standard_normal(c).astype(pdt)
    rm, rv = rng.standard_normal(c).astype(pdt), rng.uniform(0.5, 2, c).astype(pdt)
    plain, tuned = _both(x, dy, w, b, rm, rv, training)
    _assert_same(plain, tuned, dtype)


# the tuned path computes inf - inf on the way to nan and lets NumPy warn about it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("special", ["inf", "-inf", "nan", "constant", "huge", "offset"])
def test_tuned_path_matches_the_plain_functions_on_special_values(special):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 3, 2)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    if special in ("inf", "-inf", "nan"):
        x[5, 1, 0] = float(special)
    elif special == "constant":
        x[:, 2] = 7.3
    elif special == "huge":
        x[:, 0] *= 1e20
    else:
        x = (1e4 + 1e-2 * x).astype(np.float32)
    w, b = np.full(3, 1.5, np.float32), np.full(3, 0.25, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    plain, tuned = _both(x, dy, w, b, rm, rv, True)
    tol = {"rtol": 1e-3, "atol": 1e-3} if special == "offset" else _TOL[np.float32]
    for name, p, t in zip(("y", "dx", "dweight", "dbias", "running_mean", "running_var"), plain, tuned):
        np.testing.assert_allclose(t, p, err_msg=name, equal_nan=True, **tol)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_tuned_and_plain_count_batches_alike(momentum):
    x = np.random.default_rng(4).standard_normal((6, 2))
    counters = [np.array(2, np.int64), np.array(2, np.int64)]
    buffers = [(np.zeros(2), np.ones(2)), (np.zeros(2), np.ones(2))]
    for forward, counter, (rm, rv) in zip((batchnorm_forward, _fast.forward), counters, buffers):
        forward(x, None, None, rm, rv, training=True, momentum=momentum, num_batches_tracked=counter)
    assert int(counters[0]) == int(counters[1]) == 3
    np.testing.assert_allclose(buffers[1][0], buffers[0][0], **FLOAT64_PARITY)
    np.testing.assert_allclose(buffers[1][1], buffers[0][1], **FLOAT64_PARITY)


BAD_CALLS = [
    ((np.zeros((1, 3)), None, None, None, None), {"training": True}),
    ((np.zeros(3), None, None, None, None), {"training": True}),
    ((np.zeros((4, 3)), np.ones(4), None, None, None), {"training": True}),
    ((np.zeros((4, 3)), None, None, None, None), {"training": False}),
    ((np.zeros((4, 3)), None, None, np.zeros(3), None), {"training": True}),
    ((np.zeros((4, 3), np.int64), None, None, None, None), {"training": True}),
    ((np.zeros((4, 3)), np.ones(3, np.float32), None, None, None), {"training": True}),
    ((np.zeros((4, 3)), None, None, None, None), {"training": True, "eps": 0.0}),
    ((np.zeros((4, 3)), None, None, np.zeros(3), np.ones(3)), {"training": True, "momentum": None}),
    (([[1.0, 2.0]], None, None, None, None), {"training": True}),
]


@pytest.mark.parametrize("args, kwargs", BAD_CALLS)
def test_tuned_and_plain_raise_the_same_errors(args, kwargs):
    errors = []
    for forward in (batchnorm_forward, _fast.forward):
        with pytest.raises(Exception) as info:
            forward(*args, **kwargs)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 150), c=st.integers(1, 4), s=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-3, 1e3), offset=st.floats(-1e3, 1e3))
def test_tuned_path_matches_the_plain_functions_on_random_float64_batches(n, c, s, seed, scale, offset):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, s)) * scale + offset
    dy = rng.standard_normal(x.shape)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    plain, tuned = _both(x, dy, w, b, np.zeros(c), np.ones(c), True)
    cond = 1.0 + abs(offset) / scale          # x - mean cancels the offset: its rounding scales with it
    for name, p, t in zip(("y", "dx", "dweight", "dbias", "running_mean", "running_var"), plain, tuned):
        np.testing.assert_allclose(t, p, rtol=1e-10 * cond, atol=1e-10 * cond * (1 + np.abs(p).max()),
                                   err_msg=name)
