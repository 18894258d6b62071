"""``bncourse.distributed``: the launcher's deadlines, and the claims of chapter 7's data-parallel section.

The chapter's experiment runs with 4 workers on Fashion-MNIST; here the same code runs with 2 workers on a
small synthetic task, over two seeds, so the claims are checked in CI at a fraction of the cost.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing import ProcessRaisedException

from bncourse.distributed import compare_training, launch


def _dies_or_waits(rank: int, world_size: int) -> None:
    if rank == 1:
        raise RuntimeError("rank 1 died")
    dist.all_reduce(torch.zeros(3))          # waits for rank 1, which never comes


def _hangs(rank: int, world_size: int) -> None:
    time.sleep(600)


def test_dead_rank_fails_fast_and_hung_group_times_out():
    t0 = time.monotonic()
    # whichever rank is reported first: rank 1's error, or rank 0's broken connection to it
    with pytest.raises(ProcessRaisedException, match="rank 1 died|Connection"):
        launch(_dies_or_waits, 2, timeout=60, collective_timeout=60)
    with pytest.raises(TimeoutError, match="did not finish within 4"):
        launch(_hangs, 2, timeout=4)
    assert time.monotonic() - t0 < 50       # neither waited for the 60 s collective timeout


def _task(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A 3-class problem in 20 dimensions: labels from a random linear teacher, inputs off-centre."""
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(20, 3, generator=gen)
    x = 2.0 + torch.randn(n, 20, generator=gen)
    return x, (x - 2.0).matmul(teacher).argmax(1)


@pytest.fixture(scope="module")
def comparison():
    x, y = _task(1200, 0)
    x_val, y_val = _task(400, 1)
    return compare_training(x, y, x_val, y_val, seeds=(0, 1), world_size=2, steps=30,
                            sizes=(20, 16, 16, 3), lr=0.05, runs=(("local", 2), ("sync", 2)),
                            latency_sizes=(9,))


def test_sync_reproduces_one_process_step_for_step(comparison):
    runs = comparison.runs
    for seed in (0, 1):
        single, sync, local = runs["single", 2, seed], runs["sync", 2, seed], runs["local", 2, seed]
        np.testing.assert_allclose(sync["losses"], single["losses"], rtol=1e-5, atol=1e-6)
        assert sync["val_acc"] == single["val_acc"]
        for state in sync["rank_states"]:
            for key, value in single["rank_states"][0].items():
                torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-5)
                assert torch.equal(state[key], sync["rank_states"][0][key])   # identical on every rank
        # local statistics: a different training from the first step on
        assert np.abs(np.subtract(local["losses"], single["losses"])).max() > 0.05


def test_latency_is_measured_for_every_group_size(comparison):
    assert set(comparison.latency) == {(k, op, 9) for k in (2,) for op in ("all_reduce", "all_gather")}
    assert all(0 < v < 1 for v in comparison.latency.values())
