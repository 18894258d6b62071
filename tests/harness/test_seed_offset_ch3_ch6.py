"""BNCOURSE_SEED_OFFSET moves the own generators of chapter 3's and chapter 6's experiments: seed s under
offset k draws what seed s + k draws without an offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bncourse.ics import class_batches
from bncourse.landscape import LandscapeProbe
from bncourse.seeding import SEED_OFFSET_ENV

torch.set_num_threads(1)


class _Bundle:
    """A data bundle with only the test split that class_batches reads."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x_test = rng.normal(size=(200, 5)).astype(np.float32)
        self.y_test = np.repeat(np.arange(4), 50)


def _probe_batches(seed: int) -> list[torch.Tensor]:
    """The loss at each probe of a fixed linear model: it depends only on the batches the probe drew."""
    x = torch.arange(300, dtype=torch.float32).reshape(100, 3) / 300
    y = torch.arange(100) % 2
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    probe = LandscapeProbe(F.cross_entropy, 0.1, x, y, batch_size=10, every=1, ics=False, seed=seed)
    for step in range(3):
        probe(model, step)
    return probe.loss


@pytest.mark.parametrize("offset", [100, -2])
def test_probe_batches_follow_the_offset(monkeypatch, offset):
    monkeypatch.setenv(SEED_OFFSET_ENV, str(offset))
    shifted = _probe_batches(3)
    monkeypatch.delenv(SEED_OFFSET_ENV)
    assert shifted == _probe_batches(3 + offset)
    assert shifted != _probe_batches(3)


@pytest.mark.parametrize("offset", [100, -2])
def test_class_batches_follow_the_offset(monkeypatch, offset):
    data = _Bundle()
    monkeypatch.setenv(SEED_OFFSET_ENV, str(offset))
    shifted = class_batches(data, 1, 2, size=10, seed=5)
    monkeypatch.delenv(SEED_OFFSET_ENV)
    same = class_batches(data, 1, 2, size=10, seed=5 + offset)
    assert all(torch.equal(a, b) for a, b in zip(shifted, same))
    assert not torch.equal(shifted[3], class_batches(data, 1, 2, size=10, seed=5)[3])
