"""``torch.autograd.gradcheck`` / ``gradgradcheck`` (float64) for ``bncourse.torch.batch_norm``.

The backward is the explicit compact formula; when it runs under ``create_graph=True`` it is
recomputed with differentiable ops, so second derivatives are checked as well.
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import bncourse.torch as bt

torch.set_num_threads(1)

SHAPES = [(5, 3), (4, 3, 5), (3, 2, 3, 4)]


def _inputs(shape, affine, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_() if affine else None
    b = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_() if affine else None
    rm = torch.randn(c, generator=g, dtype=torch.float64)
    rv = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    return x, w, b, rm, rv


def _fn(training, rm, rv, has_w, has_b, eps=1e-3):
    """f(x, [w], [b]) with fresh copies of the buffers so repeated evaluations agree."""
    def f(x, *wb):
        wb = list(wb)
        w = wb.pop(0) if has_w else None
        b = wb.pop(0) if has_b else None
        stats = (rm.clone(), rv.clone()) if rm is not None else (None, None)
        return bt.batch_norm(x, *stats, w, b, training, 0.1, eps)
    return f


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_gradcheck_and_gradgradcheck(shape, training, affine):
    x, w, b, rm, rv = _inputs(shape, affine)
    f = _fn(training, rm, rv, affine, affine)
    args = (x, w, b) if affine else (x,)
    assert gradcheck(f, args)
    assert gradgradcheck(f, args)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck_weight_only_bias_only_and_channels_last(training):
    x, w, b, rm, rv = _inputs((3, 2, 3, 4), True, channels_last=True, seed=1)
    assert gradcheck(_fn(training, rm, rv, True, False), (x, w))
    assert gradcheck(_fn(training, rm, rv, False, True), (x, b))
    assert gradgradcheck(_fn(training, rm, rv, True, True), (x, w, b))


def test_gradcheck_train_without_running_stats():
    x, w, b, _, _ = _inputs((6, 4), True, seed=2)
    f = _fn(True, None, None, True, True)
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


def test_double_backward_matches_torch():
    """Hessian-vector products through torch.nn's native double backward and ours agree."""
    x, w, b, rm, rv = _inputs((4, 3, 5), True, seed=3)
    v = torch.randn_like(x)
    results = []
    for fn in (torch.nn.functional.batch_norm, bt.batch_norm):
        y = fn(x, rm.clone(), rv.clone(), w, b, True, 0.1, 1e-3)
        gx, gw = torch.autograd.grad((y ** 2).sum(), (x, w), create_graph=True)
        results.append(torch.autograd.grad((gx * v).sum() + gw.sum(), (x, w, b)))
    for ours, ref in zip(results[1], results[0]):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
