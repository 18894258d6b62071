"""BNCOURSE_SEED_OFFSET: set_seed and train shift every seed by it, so a chapter can run on untuned seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bncourse.models import mlp
from bncourse.training import SEED_OFFSET_ENV, seed_offset, set_seed, train


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def _same_draws(a, b) -> bool:
    return a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_offset_defaults_to_zero(monkeypatch):
    monkeypatch.delenv(SEED_OFFSET_ENV, raising=False)
    assert seed_offset() == 0
    monkeypatch.setenv(SEED_OFFSET_ENV, "  ")
    assert seed_offset() == 0
    set_seed(7)
    a = _draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    assert _same_draws(a, _draws())


def test_set_seed_adds_the_offset(monkeypatch):
    monkeypatch.setenv(SEED_OFFSET_ENV, "101")
    assert seed_offset() == 101
    set_seed(2)
    shifted = _draws()
    monkeypatch.delenv(SEED_OFFSET_ENV)
    set_seed(103)
    assert _same_draws(shifted, _draws())     # seed 2 with offset 101 is seed 103
    set_seed(2)
    assert not _same_draws(shifted, _draws())


def test_negative_offset(monkeypatch):
    monkeypatch.setenv(SEED_OFFSET_ENV, "-3")
    set_seed(5)
    shifted = _draws()
    monkeypatch.delenv(SEED_OFFSET_ENV)
    set_seed(2)
    assert _same_draws(shifted, _draws())


@pytest.mark.parametrize("bad", ["abc", "1.5", "0x10"])
def test_bad_offset_is_refused_with_its_name(monkeypatch, bad):
    monkeypatch.setenv(SEED_OFFSET_ENV, bad)
    with pytest.raises(ValueError, match=f"{SEED_OFFSET_ENV} must be an integer, got '{bad}'"):
        set_seed(0)


def test_train_batch_order_follows_the_offset(monkeypatch, digits):
    def run() -> list[float]:
        torch.manual_seed(0)                           # same initialization in every run
        model = mlp([64, 16, 10], norm="bn")
        return train(model, digits, steps=5, lr=0.1, batch_size=16, seed=1, progress=False).train_loss

    monkeypatch.delenv(SEED_OFFSET_ENV, raising=False)
    base = run()
    assert run() == base                               # deterministic without an offset
    monkeypatch.setenv(SEED_OFFSET_ENV, "202")
    shifted = run()
    assert shifted != base
    monkeypatch.delenv(SEED_OFFSET_ENV)
    torch.manual_seed(0)
    model = mlp([64, 16, 10], norm="bn")
    assert train(model, digits, steps=5, lr=0.1, batch_size=16, seed=203, progress=False).train_loss == shifted
