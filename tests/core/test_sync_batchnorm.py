"""``bncourse.torch.SyncBatchNorm`` against single-process ``torch.nn.BatchNorm*d`` on the whole batch.

One launch of 4 spawned processes (gloo over 127.0.0.1, once per module) runs every case of
``sync_cases`` on a process group of 2 ranks (``process_group=``) and on all 4; the tests compare what each rank saw with torch.nn on the concatenated batch:
outputs, input gradients, summed parameter gradients and the buffers after every step, on every rank.
Launches have deadlines, so a hung collective or a dead rank fails the test instead of hanging it.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

from bncourse.distributed import free_port, launch
from bncourse.torch import BatchNorm2d, SyncBatchNorm
from sync_cases import (Case, ddp_model, ddp_train, group_worker, run_steps, special_batch,
                        torch_module)

F64 = {"rtol": 1e-10, "atol": 1e-10}
F32 = {}                          # torch.testing's float32 defaults: rtol 1.3e-6, atol 1e-5

CASES_2 = [
    Case("1d-uneven-3+5", (3, 5)),
    Case("1d-spatial-momentum-None", (2, 5), spatial=(4,), momentum=None),
    Case("2d-even-f32", (4, 4), spatial=(3, 3), dtype=torch.float32),
    Case("2d-empty-rank-f32", (6, 0), spatial=(2, 3), dtype=torch.float32),
    Case("2d-channels-last-f32", (2, 5), spatial=(3, 2), dtype=torch.float32, channels_last=True),
    Case("3d-no-affine", (3, 1), spatial=(2, 2, 2), affine=False),
    Case("1d-no-bias-no-stats", (5, 3), bias=False, track_running_stats=False),
    Case("1d-one-sample-each", (1, 1)),
]
CASES_4 = [
    Case("1d-uneven-4-ranks", (3, 5, 1, 7)),
    Case("2d-empty-rank-4-ranks", (4, 0, 2, 2), spatial=(3, 3)),
    Case("2d-f32-4-ranks", (8, 8, 8, 8), spatial=(2, 2), dtype=torch.float32, channels=5),
    Case("1d-two-empty-f32", (0, 6, 0, 3), dtype=torch.float32),
]
# float32, offset 1e4 and std 1e-2: the global variance must survive the exchange between ranks
OFFSET_CASE = Case("f32-offset-1e4", (64, 192), dtype=torch.float32, offset=1e4, scale=1e-2, steps=1,
                   momentum=1.0)
DDP_SPLITS = {2: (3, 5), 4: (5, 0, 2, 9)}
DDP_STEPS = 4


@pytest.fixture(scope="module")
def groups() -> dict[int, list[dict]]:
    """One launch of 4 ranks: the 2-rank cases on a process group of ranks 0 and 1, then the 4-rank ones."""
    ranks = launch(group_worker, 4, ({2: CASES_2 + [OFFSET_CASE], 4: CASES_4}, DDP_SPLITS, DDP_STEPS),
                   timeout=180)
    return {k: [r[k] for r in ranks[:k]] for k in (2, 4)}


@pytest.fixture(scope="module")
def group2(groups):
    return groups[2]


def _results(request, world_size: int):
    return request.getfixturevalue("groups")[world_size]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES_2 + CASES_4])
def test_matches_torch_on_the_whole_batch(request, case: Case):
    ranks = _results(request, len(case.splits))
    ours = [r[case.name] for r in ranks]
    bn_ref = torch_module(case)
    ref = run_steps(case, bn_ref, None)
    tol = F64 if case.dtype == torch.float64 else F32
    for step, expected in enumerate(ref[:-1]):
        got = [o[step] for o in ours]
        torch.testing.assert_close(torch.cat([g["y"] for g in got]), expected["y"], **tol)
        torch.testing.assert_close(torch.cat([g["dx"] for g in got]), expected["dx"], **tol)
        for name in ("weight", "bias"):
            if "grad_" + name in expected:    # the ranks' shares add up to the global gradient
                torch.testing.assert_close(sum(g["grad_" + name] for g in got),
                                           expected["grad_" + name], **tol)
            else:
                assert "grad_" + name not in got[0]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if name in expected:
                for g in got:
                    torch.testing.assert_close(g[name], expected[name], **tol)
                    assert torch.equal(g[name], got[0][name]), "buffers differ between ranks"
            else:
                assert name not in got[0]
        if case.channels_last:
            assert all(bool(g["y_is_channels_last"]) for g in got if g["y"].shape[0] > 0)
    if case.track_running_stats:
        torch.testing.assert_close(torch.cat([o[-1]["y_eval"] for o in ours]), ref[-1]["y_eval"], **tol)
    else:   # eval without buffers normalizes each rank's batch by itself, without communication (torch)
        x, _ = case.global_batch(case.steps)
        bn_ref.eval()
        for rank, o in enumerate(ours):
            with torch.no_grad():
                expected = bn_ref(case.layout(case.share(x, rank).to(case.dtype)))
            torch.testing.assert_close(o[-1]["y_eval"], expected, **tol)


def test_float32_large_offset_keeps_the_variance(group2):
    """Offset 1e4, std 1e-2 in float32: the variance within 1e-5 relative of float64 on the same numbers."""
    case = OFFSET_CASE
    x, _ = case.global_batch(0)
    x32 = x.float()
    true_var = x32.double().var(0, unbiased=True)
    y64 = (x32.double() - x32.double().mean(0)) / (x32.double().var(0, unbiased=False) + 1e-5).sqrt()
    for rank in group2:
        got = rank[case.name][0]["running_var"].double()            # momentum 1: the batch's variance
        assert ((got - true_var).abs() / true_var).max() < 1e-5
    torch.testing.assert_close(torch.cat([r[case.name][0]["y"] for r in group2]).double(), y64,
                               rtol=0, atol=1e-4)
    # the exchange without centring (raw sums in float32) loses that variance completely
    raw = (x32.square().sum(0) / x32.shape[0] - (x32.sum(0) / x32.shape[0]).square()).double()
    assert ((raw - true_var * (x32.shape[0] - 1) / x32.shape[0]).abs() > 0.5 * true_var).all()


@pytest.mark.parametrize("world_size", [2, 4])
def test_errors_are_torchs(request, world_size):
    errors = [r["errors"] for r in _results(request, world_size)]
    for e in errors:
        assert e["rank"] == ("ValueError", "expected at least 2D input (got 1D input)")
        assert e["channels"] == ("RuntimeError", "running_mean should contain 4 elements not 3")
        assert e["zero_channels"] == ("ValueError",
                                      "SyncBatchNorm number of input channels should be non-zero")
        # a global batch of one value per channel raises on every rank, the empty ones included
        for label in ("one_value", "one_value_spatial"):
            assert e[label] == ("ValueError", "Expected more than 1 value per channel when training, "
                                              "got input size 1")
        assert e["double_backward"][0] == "RuntimeError" and "double backward" in e["double_backward"][1]
    for rank, r in enumerate(_results(request, world_size)):   # the group still works afterwards
        mean = (world_size - 1) / 2
        std = math.sqrt(sum((k - mean) ** 2 for k in range(world_size)) / world_size)
        torch.testing.assert_close(r["after_errors"],
                                   torch.full((2, 3), (rank - mean) / math.sqrt(std ** 2 + 1e-5)))


@pytest.mark.parametrize("world_size", [2, 4])
def test_inf_on_one_rank_gives_torchs_running_statistics(request, world_size):
    """+inf on one rank: torch's running mean is inf (not nan), its running variance nan."""
    ref = nn.BatchNorm1d(2, momentum=0.5, dtype=torch.float64)
    ref(torch.cat([special_batch(r) for r in range(world_size)]))
    for r in _results(request, world_size):
        torch.testing.assert_close(r["specials"]["inf_running_mean"], ref.running_mean, equal_nan=True)
        torch.testing.assert_close(r["specials"]["inf_running_var"], ref.running_var, equal_nan=True)


@pytest.mark.parametrize("world_size", [2, 4])
def test_empty_global_batch_has_empty_gradients(request, world_size):
    """``(2, 2, 0)`` on every rank: torch returns an empty dx and zero parameter gradients."""
    x = torch.zeros(2 * world_size, 2, 0, dtype=torch.float64, requires_grad=True)
    ref = nn.BatchNorm1d(2, dtype=torch.float64)
    expected = torch.autograd.grad(ref(x).sum(), [x, ref.weight, ref.bias])
    for r in _results(request, world_size):
        got = r["specials"]["empty"]
        assert not isinstance(got[0], str), f"backward raised {got}"
        assert got[0].shape == (2, 2, 0)
        torch.testing.assert_close(got[1], expected[1])
        torch.testing.assert_close(got[2], expected[2])


@pytest.mark.parametrize("world_size", [2, 4])
def test_one_collective_per_pass_and_none_in_eval(request, world_size):
    for r in _results(request, world_size):
        assert r["calls"] == {"forward": {"all_gather": 1, "all_reduce": 0},
                              "backward": {"all_gather": 1, "all_reduce": 1},
                              "eval": {"all_gather": 1, "all_reduce": 1}}


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_training_matches_one_process(request, world_size):
    """Linear-BN-ReLU x2 under DistributedDataParallel, uneven shares: every step equals one process."""
    ref = ddp_train(ddp_model(0), DDP_SPLITS[world_size], DDP_STEPS, None)
    ranks = [r["ddp"] for r in _results(request, world_size)]
    for step, expected in enumerate(ref):
        for r in ranks:
            assert r[step].keys() == expected.keys()
            for key, value in expected.items():
                torch.testing.assert_close(r[step][key], value, **F64, msg=f"step {step} {key}")
    # torch.nn.BatchNorm1d per rank (local statistics) would not: check the test can tell
    local = nn.BatchNorm1d(8).double()
    x = torch.randn(8, 8, dtype=torch.float64)
    assert not torch.allclose(torch.cat([local(x[:3]), local(x[3:])]), local(x))


# ---- without communication ----------------------------------------------------------------------

def test_without_process_group_it_is_batchnorm():
    assert not dist.is_initialized()
    torch.manual_seed(0)
    ours, ref = SyncBatchNorm(4), nn.BatchNorm2d(4)
    x = torch.randn(6, 4, 3, 3, requires_grad=True)
    for _ in range(2):
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref)
        g, = torch.autograd.grad(y.square().sum(), x)
        g_ref, = torch.autograd.grad(y_ref.square().sum(), x)
        torch.testing.assert_close(g, g_ref)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())
    with pytest.raises(ValueError, match=r"got input size torch.Size\(\[1, 4\]\)"):
        ours(torch.randn(1, 4))                         # torch's fallback message


def test_single_rank_group_does_not_communicate(monkeypatch):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    try:
        def forbidden(*args, **kwargs):
            raise AssertionError("a one-rank group must not communicate")
        monkeypatch.setattr(dist, "all_gather", forbidden)
        monkeypatch.setattr(dist, "all_reduce", forbidden)
        x = torch.randn(5, 3, 4, requires_grad=True)
        y = SyncBatchNorm(3)(x)
        y.sum().backward()
        torch.testing.assert_close(y, nn.BatchNorm1d(3)(x))
    finally:
        dist.destroy_process_group()


def test_constructor_matches_torch():
    for kwargs in ({}, {"eps": 1e-3, "momentum": None, "affine": False},
                   {"track_running_stats": False, "bias": False}, {"dtype": torch.float64}):
        ours, ref = SyncBatchNorm(7, **kwargs), nn.SyncBatchNorm(7, **kwargs)
        assert repr(ours) == repr(ref)
        assert ours.state_dict().keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v)
    group = object()
    assert SyncBatchNorm(3, process_group=group).process_group is group
    assert SyncBatchNorm(3, 1e-5, 0.1, True, True, group).process_group is group


def test_convert_sync_batchnorm_keeps_state_and_mode():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16, affine=False)),
                          BatchNorm2d(4))
    model[1](torch.randn(5, 4, 2, 2))
    model[1].eval()
    weight, running_mean = model[1].weight, model[1].running_mean
    group = object()
    converted = SyncBatchNorm.convert_sync_batchnorm(model, process_group=group)
    assert converted is model
    assert [type(m) for m in (model[1], model[3][1], model[4])] == [SyncBatchNorm] * 3
    assert model[1].weight is weight and model[1].running_mean is running_mean
    assert int(model[1].num_batches_tracked) == 1 and model[1].momentum is None
    assert not model[1].training and model[3][1].training
    assert model[3][1].weight is None and model[1].process_group is group
    root = SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm3d(2, eps=1e-3))
    assert isinstance(root, SyncBatchNorm) and root.eps == 1e-3


def test_double_backward_without_group():
    """Without a group the layer is BatchNorm and supports create_graph (refused when synchronized)."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    g, = torch.autograd.grad(SyncBatchNorm(3, dtype=torch.float64)(x).square().sum(), x,
                             create_graph=True)
    g.sum().backward()
    assert x.grad is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_torch_sync_batchnorm():
    """On GPUs: NCCL with one GPU per rank when there are two, else gloo with both ranks on one GPU."""
    from sync_cases import cuda_worker
    backend = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
    ranks = launch(cuda_worker, 2, ((3, 5), 3), backend=backend, timeout=300)
    for rank in ranks:
        for step in rank:
            for key, value in step["torch"].items():
                torch.testing.assert_close(step["ours"][key], value, msg=f"{backend} {key}")
