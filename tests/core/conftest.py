"""Fixtures of the core-layer tests: the backend a parity/error/gradient test runs on, and the
torch device.

``backend``: ``numpy`` (``bncourse.numpy``), ``torch-cpu`` and ``torch-cuda`` (``bncourse.torch``;
skipped without a GPU); see ``backends.py``. ``device``: ``cpu`` and ``cuda`` for the tests of
torch-only behaviour (memory formats, state_dict, conversion).
"""
from __future__ import annotations

import pytest
import torch

from backends import BACKENDS

_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(params=[pytest.param(name, marks=_CUDA if name.endswith("cuda") else [])
                        for name in BACKENDS])
def backend(request):
    return BACKENDS[request.param]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=_CUDA)])
def device(request) -> str:
    return request.param
