"""bncourse.numpy against torch.nn.BatchNorm1d/2d/3d and torch.nn.functional.batch_norm.

The cases are PyTorch's own: the constructor arguments and input shapes of ModuleInfo
(``common_modules.py::module_inputs_torch_nn_BatchNorm{1,2,3}d``) and the OpInfo samples of
``nn.functional.batch_norm`` (``sample_inputs_batch_norm``), as listed in
``/work/shared/notes/batchnorm-semantics.md`` sections 2.1 and 2.2. Every module case runs several
training steps, then evaluation steps, then training again, comparing outputs, dx, dweight,
dbias, the running statistics and num_batches_tracked after every step.
float64 is compared to 1e-10; float32 with ``torch.testing.assert_close``'s default tolerances.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_compat import TORCH_HAS_BIAS_KW

from bncourse.numpy import BatchNorm, batchnorm_backward, batchnorm_backward_staged, batchnorm_forward

torch.set_num_threads(1)

DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}
TOL = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": {}}   # {}: assert_close defaults

# (torch module, positional constructor args, keyword args, input shape, description)
MODULE_CASES = []
for _cls, _shape, _zero, _mom in (
    (torch.nn.BatchNorm1d, (4, 10), (0, 5, 9), 0.3),
    (torch.nn.BatchNorm2d, (2, 3, 6, 6), (0, 5, 2, 2), 0.8),
    (torch.nn.BatchNorm3d, (2, 3, 4, 4, 4), (0, 5, 2, 2, 2), 0.7),
):
    _c = _shape[1]
    MODULE_CASES += [
        (_cls, (_c,), {}, _shape, "affine"),
        (_cls, (_c, 1e-3, None), {}, _shape, "simple_average"),
        (_cls, (_c, 1e-3, _mom), {}, _shape, "momentum"),
        (_cls, (_c, 1e-3, _mom, False), {}, _shape, "not_affine"),
        (_cls, (_c, 1e-3, _mom, True, False), {}, _shape, "not_tracking_stats"),
        (_cls, (5, 1e-3, 0.3, False), {}, _zero, "zero_batch"),
        (_cls, (_c,), {"bias": False}, _shape, "affine_not_bias"),
    ]
# BatchNorm1d's 3-D input cases
MODULE_CASES += [
    (torch.nn.BatchNorm1d, (5,), {}, (4, 5, 3), "3d_input"),
    (torch.nn.BatchNorm1d, (5, 1e-3, 0.3, False), {}, (4, 5, 3), "3d_input_not_affine"),
]


def _close(ours: Optional[np.ndarray], theirs: Optional[torch.Tensor], dtype: str, what: str) -> None:
    if theirs is None:
        assert ours is None, f"{what}: torch has None, ours {ours!r}"
        return
    assert ours is not None, f"{what}: ours is None, torch has a value"
    torch.testing.assert_close(torch.from_numpy(np.asarray(ours)), theirs.detach(),
                               **TOL[dtype], msg=lambda m: f"{what}: {m}")


def _compare_state(ours: BatchNorm, theirs: torch.nn.Module, dtype: str, when: str) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _close(getattr(ours, name), getattr(theirs, name), dtype, f"{name} {when}")
    if theirs.num_batches_tracked is None:
        assert ours.num_batches_tracked is None
    else:
        assert ours.num_batches_tracked is not None
        assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked), when


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("cls,args,kwargs,shape,desc", MODULE_CASES,
                         ids=[f"{c.__name__}-{d}-{s}" for c, _, _, s, d in MODULE_CASES])
def test_module_parity_over_steps(cls, args, kwargs, shape, desc, dtype):
    if "bias" in kwargs and not TORCH_HAS_BIAS_KW:
        pytest.skip("torch.nn BatchNorm has no bias= keyword before torch 2.13")
    np_dtype, t_dtype = DTYPES[dtype]
    rng = np.random.default_rng(zlib.crc32(repr((desc, shape, cls.__name__)).encode()))
    theirs = cls(*args, **kwargs, dtype=t_dtype)
    with torch.no_grad():            # non-trivial parameters, so that affine terms are exercised
        if theirs.weight is not None:
            theirs.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, theirs.num_features)))
        if theirs.bias is not None:
            theirs.bias.copy_(torch.from_numpy(rng.standard_normal(theirs.num_features)))
    ours = BatchNorm(*args, **kwargs, dtype=np_dtype)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    _compare_state(ours, theirs, dtype, "after loading")

    for step, training in enumerate([True, True, True, False, False, True]):
        ours.train(training)
        theirs.train(training)
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(np_dtype)
        dy = rng.standard_normal(shape).astype(np_dtype)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        for p in theirs.parameters():
            p.grad = None
        ty = theirs(tx)
        ty.backward(torch.from_numpy(dy))
        y = ours(x)
        dx = ours.backward(dy)
        when = f"step {step} ({'train' if training else 'eval'})"
        assert y.dtype == np_dtype and dx.dtype == np_dtype
        _close(y, ty, dtype, f"y {when}")
        _close(dx, tx.grad, dtype, f"dx {when}")
        _close(ours.grad_weight, None if theirs.weight is None else theirs.weight.grad, dtype,
               f"dweight {when}")
        _close(ours.grad_bias, None if theirs.bias is None else theirs.bias.grad, dtype,
               f"dbias {when}")
        _compare_state(ours, theirs, dtype, when)


def _make(rng: np.random.Generator, shape, low: float = -9.0, high: float = 9.0) -> np.ndarray:
    """Like OpInfo's make_tensor for floats: uniform in [low, high)."""
    return rng.uniform(low, high, shape)


S = 5
# (input shape, kwargs) of sample_inputs_batch_norm (nn.functional.batch_norm's OpInfo), with
# 2-D-or-more inputs; the 1-D (0,) samples are tested separately below.
FUNCTIONAL_SAMPLES = [
    ((S, S, S), dict(training=True, momentum=0.5, eps=0.6)),
    ((3, 2, 4), dict(training=False, momentum=-1.2)),
    ((3, 1), dict(training=True, momentum=0.0)),
    ((3, 2, 3, 4), dict(training=True, momentum=-1.0, eps=0.5)),
    ((3, 2, 3, 4), dict(training=False, momentum=-1.0, eps=0.5)),
    ((2, 1), dict()),
    ((2, 1), dict(training=True)),      # "fresh weight and bias, training in [True, False, False]"
    ((2, 1), dict(training=False)),
]


def _functional_pair(x, weight, bias, running_mean, running_var, dy, kwargs, dtype, backward):
    """Run ours and F.batch_norm on copies of the same data; compare everything."""
    np_dtype, _ = DTYPES[dtype]
    cast = lambda a: None if a is None else a.astype(np_dtype, copy=False)
    x, weight, bias, running_mean, running_var, dy = map(cast, (x, weight, bias, running_mean,
                                                                running_var, dy))
    t = lambda a, grad=False: None if a is None else torch.from_numpy(a.copy()).requires_grad_(grad)
    tx, tw, tb = t(x, True), t(weight, True), t(bias, True)
    trm, trv = t(running_mean), t(running_var)
    ty = F.batch_norm(tx, trm, trv, tw, tb, **kwargs)
    inputs = [v for v in (tx, tw, tb) if v is not None]
    grads = torch.autograd.grad(ty, inputs, torch.from_numpy(dy))
    tgrads = dict(zip([n for n, v in (("x", tx), ("w", tw), ("b", tb)) if v is not None], grads))

    training = kwargs.get("training", False)
    momentum = kwargs.get("momentum", 0.1)
    eps = kwargs.get("eps", 1e-5)
    y, cache = batchnorm_forward(x, weight, bias, running_mean, running_var,
                                 training=training, momentum=momentum, eps=eps)
    dx, dw, db = backward(dy, cache)
    _close(y, ty, dtype, "y")
    _close(running_mean, trm, dtype, "running_mean")
    _close(running_var, trv, dtype, "running_var")
    _close(dx, tgrads["x"], dtype, "dx")
    _close(dw, tgrads.get("w"), dtype, "dweight")
    _close(db, tgrads.get("b"), dtype, "dbias")


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_staged],
                         ids=["compact", "staged"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape,kwargs", FUNCTIONAL_SAMPLES,
                         ids=[f"{s}-{k}" for s, k in FUNCTIONAL_SAMPLES])
def test_functional_parity_opinfo_samples(shape, kwargs, dtype, backward):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    c = shape[1]
    x, weight, bias = _make(rng, shape), _make(rng, c), _make(rng, c)
    running_mean, running_var = _make(rng, c, low=0), _make(rng, c, low=0)
    dy = _make(rng, shape)
    _functional_pair(x, weight, bias, running_mean, running_var, dy, kwargs, dtype, backward)


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_staged],
                         ids=["compact", "staged"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_functional_parity_all_none(dtype, backward):
    """OpInfo's (1, 2, 3) sample with running stats, weight and bias all None, training=True."""
    rng = np.random.default_rng(7)
    _functional_pair(_make(rng, (1, 2, 3)), None, None, None, None, _make(rng, (1, 2, 3)),
                     dict(training=True), dtype, backward)


@pytest.mark.parametrize("training", [True, False])
def test_functional_one_dimensional_empty_input_is_rejected(training):
    """OpInfo's ``(0,)`` samples: torch returns an empty tensor for a 1-D empty input (it has no
    channel axis); the NumPy path refuses every input below 2-D with the module's message."""
    assert F.batch_norm(torch.zeros(0), torch.zeros(0), torch.ones(0), training=training).shape == (0,)
    with pytest.raises(ValueError, match=r"^expected at least 2D input \(got 1D input\)$"):
        batchnorm_forward(np.zeros(0), None, None, np.zeros(0), np.ones(0), training=training)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 4), (2, 3, 2, 3, 2)])
def test_functional_training_steps_update_buffers_like_torch(shape, dtype):
    """Five consecutive training calls of the functional form share the buffers."""
    np_dtype, _ = DTYPES[dtype]
    rng = np.random.default_rng(3)
    c = shape[1]
    rm, rv = np.zeros(c, np_dtype), np.ones(c, np_dtype)
    trm, trv = torch.zeros(c, dtype=torch.from_numpy(rm).dtype), torch.ones(c, dtype=torch.from_numpy(rv).dtype)
    for _ in range(5):
        x = (rng.standard_normal(shape) * 2 + 1).astype(np_dtype)
        y, _ = batchnorm_forward(x, None, None, rm, rv, training=True, momentum=0.25)
        ty = F.batch_norm(torch.from_numpy(x), trm, trv, training=True, momentum=0.25)
        _close(y, ty, dtype, "y")
        _close(rm, trm, dtype, "running_mean")
        _close(rv, trv, dtype, "running_var")


@pytest.mark.parametrize("layout", ["spatial_transposed", "channels_from_axis_2"])
def test_non_contiguous_input_matches_torch(layout):
    """Inputs that are views with non-contiguous strides (cf. test_batchnorm_non_contig_cpu)."""
    rng = np.random.default_rng(11)
    if layout == "spatial_transposed":
        x = rng.standard_normal((4, 3, 5, 6)).transpose(0, 1, 3, 2)
    else:
        x = rng.standard_normal((4, 5, 3, 6)).transpose(0, 2, 1, 3)
    assert not x.flags["C_CONTIGUOUS"] and x.shape[1] == 3
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    _functional_pair(x, w, b, np.zeros(3), np.ones(3), dy, dict(training=True), "float64",
                     batchnorm_backward)
