"""Chapter 7's experiments follow BNCOURSE_SEED_OFFSET: seed s under offset k draws exactly what seed s + k
draws under none (the bug-clinic detector, the data-parallel runs in this process and in the workers)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from bncourse import distributed, pitfalls
from bncourse.distributed import free_port
from bncourse.seeding import SEED_OFFSET_ENV, set_seed

torch.set_num_threads(1)


def _dropout_model() -> nn.Sequential:
    torch.manual_seed(0)                       # fixed weights: only the dropout masks may depend on the seed
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).train()


def _dependence(seed: int) -> float:
    model = _dropout_model()
    x = torch.linspace(-1, 1, 48).reshape(8, 6)
    set_seed(seed)
    return pitfalls.batch_dependence(model, x)


def test_batch_dependence_draws_follow_the_offset(monkeypatch):
    monkeypatch.setenv(SEED_OFFSET_ENV, "7")
    shifted = _dependence(2)
    monkeypatch.setenv(SEED_OFFSET_ENV, "0")
    assert _dependence(9) == shifted           # seed 2 with offset 7 is seed 9
    assert _dependence(2) != shifted           # and the offset did change the dropout masks


def test_batch_dependence_does_not_count_dropout_alone():
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    set_seed(0)
    assert pitfalls.batch_dependence(model, torch.randn(8, 6)) == 0.0


def test_batches_and_initialization_follow_the_offset(monkeypatch):
    monkeypatch.setenv(SEED_OFFSET_ENV, "100")
    order = distributed._batches(3, 50, 4, 8)
    weights = distributed._build(3, (6, 5, 3), sync=False).state_dict()
    monkeypatch.setenv(SEED_OFFSET_ENV, "0")
    assert torch.equal(distributed._batches(103, 50, 4, 8), order)
    assert all(torch.equal(v, weights[k]) for k, v in distributed._build(103, (6, 5, 3), sync=False)
               .state_dict().items())
    assert not torch.equal(distributed._batches(3, 50, 4, 8), order)


def test_a_worker_uses_the_offset_it_is_given(monkeypatch):
    """The worker function sets the offset it receives from the parent, whatever its own environment says."""
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(64) % 3
    data = (x, y, x[:16], y[:16])
    monkeypatch.setenv(SEED_OFFSET_ENV, "0")              # restored after the test
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        args = (data, (1,), (6, 5, 3), 4, (("local", 4),), 0.05, ())
        given = distributed._demo_worker(0, 1, *args, 20)
        assert os.environ[SEED_OFFSET_ENV] == "20"
        plain = distributed._demo_worker(0, 1, data, (21,), (6, 5, 3), 4, (("local", 4),), 0.05, (), 0)
    finally:
        dist.destroy_process_group()
    assert given["local", 4, 1]["losses"] == plain["local", 4, 21]["losses"]
    for k, v in plain["local", 4, 21]["state"].items():
        assert torch.equal(given["local", 4, 1]["state"][k], v)
