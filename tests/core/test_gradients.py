"""Gradients on every backend: the analytic ``dx``, ``dweight``, ``dbias`` of the functional form
against centred finite differences of the same backend's forward, in float64.

``L = sum(y * dy)`` for a fixed random ``dy``; each input element is moved by ``±h`` and
``(L(+h) - L(-h)) / 2h`` compared with the analytic gradient (NumPy: the compact and the staged
backward). Backend-specific checks stay with the backend: ``test_numpy_gradients.py`` (the
checker's own report, properties under Hypothesis), ``test_torch_gradcheck.py`` (``gradcheck``
and ``gradgradcheck``).
"""
from __future__ import annotations

import pytest
import torch

SHAPES = [(6, 3), (3, 2, 4), (2, 3, 2, 3), (2, 2, 2, 2, 2), (2, 1)]
H = 1e-6


def _loss(backend, x, rm, rv, w, b, dy, training):
    rm_, rv_ = (None, None) if rm is None else (rm.clone(), rv.clone())
    (y, *_), *_ = backend.functional(x, rm_, rv_, w, b, dy, {"training": training})
    return float((y.to(dy.device) * dy).sum())


def _numerical(backend, args, index, dy, training):
    """d L / d args[index] by centred differences, element by element."""
    t = args[index]
    grad = torch.zeros_like(t)
    flat, gflat = t.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + H
        up = _loss(backend, *args, dy, training)
        flat[i] = old - H
        down = _loss(backend, *args, dy, training)
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return grad


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_finite_differences(shape, training, affine, backend):
    g = torch.Generator().manual_seed(sum(shape))
    c = shape[1]
    opts = dict(dtype=torch.float64)
    x = (torch.randn(shape, generator=g, **opts) * 2 + 0.5).to(backend.device)
    w = (torch.rand(c, generator=g, **opts) * 1.5 + 0.5).to(backend.device) if affine else None
    b = torch.randn(c, generator=g, **opts).to(backend.device) if affine else None
    rm = torch.randn(c, generator=g, **opts).to(backend.device)
    rv = (torch.rand(c, generator=g, **opts) * 1.5 + 0.5).to(backend.device)
    dy = torch.randn(shape, generator=g, **opts).to(backend.device)
    args = [x, rm, rv, w, b]
    for result in backend.functional(x, rm.clone(), rv.clone(), w, b, dy, {"training": training}):
        _, dx, dw, db = result
        for index, analytic, name in ((0, dx, "dx"), (3, dw, "dweight"), (4, db, "dbias")):
            if args[index] is None:
                assert analytic is None, name
                continue
            numeric = _numerical(backend, args, index, dy, training)
            torch.testing.assert_close(analytic.to(numeric.device), numeric, rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{name}: {m}")
