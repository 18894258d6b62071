"""Three-way parity: ``bncourse.numpy`` vs ``bncourse.torch`` vs ``torch.nn``, float64.

Over torch's own cases (ModuleInfo constructor/input combinations, OpInfo samples of
``nn.functional.batch_norm``): outputs, dx, dgamma, dbeta, running statistics and
``num_batches_tracked`` after each of several training steps, and eval. All three are compared with
``torch.nn`` at 1e-10 (float64), so they agree with each other too.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import bncourse.numpy as bnp
import bncourse.torch as bt
from test_torch_parity import (MODULE_CASES, MODULE_IDS, TORCH_CLASSES, make_pair, opinfo_samples,
                               random_batch)

torch.set_num_threads(1)
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _np(t):
    return None if t is None else t.detach().cpu().numpy().copy()


def _same(np_value, torch_value, what):
    if torch_value is None:
        assert np_value is None, what
        return
    assert np_value is not None, what
    assert_close(torch.from_numpy(np.asarray(np_value)), torch_value.detach().cpu(), **TOL,
                 msg=lambda m: f"{what}: {m}")


def numpy_twin(name, args, kwargs):
    """bncourse.numpy.BatchNorm with the torch.nn positional constructor arguments."""
    return bnp.BatchNorm(*args, **kwargs, dtype=np.float64)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", MODULE_CASES, ids=MODULE_IDS)
def test_module_cases_three_way(case, training):
    name, _, args, kwargs, shape = case
    ref, ours = make_pair(name, args, kwargs, "cpu", torch.float64)
    twin = numpy_twin(name, args, kwargs)
    twin.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    for m in (ref, ours, twin):
        m.train(training)
    g = torch.Generator().manual_seed(21)
    for step in range(3):
        x = random_batch(shape, "cpu", torch.float64, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64)
        outs = {}
        for label, m in (("torch.nn", ref), ("bncourse.torch", ours)):
            m.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            y = m(xi)
            y.backward(dy)
            outs[label] = (y, xi.grad, m.weight.grad if m.weight is not None else None,
                           m.bias.grad if m.bias is not None else None)
        y_np = twin.forward(x.numpy().copy())
        dx_np = twin.backward(dy.numpy().copy())
        got_np = (y_np, dx_np, twin.grad_weight if twin.weight is not None else None,
                  twin.grad_bias if twin.bias is not None else None)
        expected = outs["torch.nn"]
        for what, a, b, e in zip(("y", "dx", "dweight", "dbias"), got_np, outs["bncourse.torch"],
                                 expected):
            _same(a, e, f"numpy {what} step {step}")
            if e is not None:
                assert_close(b, e, **TOL, msg=f"bncourse.torch {what} step {step}")
        sd_ref, sd_np = ref.state_dict(), twin.state_dict()
        assert list(sd_np) == list(sd_ref)
        for k in sd_ref:
            _same(sd_np[k], sd_ref[k], f"numpy state {k} step {step}")
            assert_close(ours.state_dict()[k], sd_ref[k], **TOL)


def test_opinfo_samples_three_way():
    torch.manual_seed(0)
    checked = 0
    for x, rm, rv, w, b, kwargs in opinfo_samples("cpu", torch.float64):
        training = kwargs.get("training", False)
        momentum, eps = kwargs.get("momentum", 0.1), kwargs.get("eps", 1e-5)
        clones = lambda: [None if t is None else t.detach().clone() for t in (rm, rv)]  # noqa: E731
        rm_t, rv_t = clones()
        rm_o, rv_o = clones()
        xt = x.detach().clone().requires_grad_()
        wt, bt_ = [None if t is None else t.detach().clone().requires_grad_() for t in (w, b)]
        yt = F.batch_norm(xt, rm_t, rv_t, wt, bt_, training, momentum, eps)
        yo = bt.batch_norm(x.detach(), rm_o, rv_o, w, b, training, momentum, eps)
        assert_close(yo, yt, **TOL)
        if x.dim() < 2:
            continue   # bncourse.numpy accepts ranks >= 2 only (documented); (0,) is torch-only
        rm_n, rv_n = _np(rm), _np(rv)
        y_np, cache = bnp.batchnorm_forward(_np(x), _np(w), _np(b), rm_n, rv_n, training=training,
                                            momentum=momentum, eps=eps)
        _same(y_np, yt, f"y {tuple(x.shape)} {kwargs}")
        _same(rm_n, rm_t, "running_mean")
        _same(rv_n, rv_t, "running_var")
        dy = torch.randn_like(yt)
        leaves = [t for t in (xt, wt, bt_) if t is not None]
        grads = torch.autograd.grad(yt, leaves, dy)
        dx, dw, db = bnp.batchnorm_backward(dy.numpy().copy(), cache)
        got = [dx] + [g for g, t in ((dw, wt), (db, bt_)) if t is not None]
        for a, e in zip(got, grads):
            _same(a, e, f"grads {tuple(x.shape)} {kwargs}")
        checked += 1
    assert checked >= 8
