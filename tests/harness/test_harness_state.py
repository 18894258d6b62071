"""bncourse.state: the one context manager that leaves a model as found, and the one BatchNorm test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bncourse.pitfalls import FrozenBatchNorm
from bncourse.state import as_model_input, batchnorm_layers, is_batchnorm, preserved

torch.set_num_threads(1)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 3))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_preserved_restores_params_buffers_modes_and_rng():
    model = _net()
    model.train()
    model[1].eval()  # mixed modes must come back per module
    before, modes = _state(model), [m.training for m in model.modules()]
    torch.manual_seed(42)
    rng = torch.get_rng_state()
    param_ids = [id(p) for p in model.parameters()]
    with preserved(model):
        model.train()
        model(torch.randn(8, 4))  # moves the running statistics, draws dropout masks
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert [id(p) for p in model.parameters()] == param_ids  # restored in place: optimizers keep their tensors


def test_preserved_restores_when_the_block_raises():
    model = _net()
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        with preserved(model):
            model(torch.randn(8, 4))
            model.eval()
            raise RuntimeError("boom")
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("part", ["params", "buffers", "modes", "rng"])
def test_each_part_can_be_kept(part):
    model = _net()
    w0 = model[0].weight.detach().clone()
    rng = torch.get_rng_state()
    with preserved(model, **{part: False}):
        model.train()
        model(torch.randn(8, 4))
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model.eval()
    kept = {"rng": not torch.equal(torch.get_rng_state(), rng),
            "params": not torch.equal(model[0].weight, w0),
            "buffers": int(model[1].num_batches_tracked) == 1,
            "modes": not model.training}
    assert kept == {k: k == part for k in kept}


def test_is_batchnorm_and_batchnorm_layers():
    frozen = FrozenBatchNorm(3)
    no_stats = nn.BatchNorm1d(3, track_running_stats=False)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.LayerNorm(3), frozen, no_stats, nn.BatchNorm2d(1))
    assert [is_batchnorm(m) for m in model] == [False, True, False, True, True, True]
    assert batchnorm_layers(model) == [model[1], model[5]]  # with running statistics and a momentum
    try:
        from bncourse import torch as bt
    except ImportError:  # pragma: no cover - the course's BN ships with the package
        return
    assert is_batchnorm(bt.BatchNorm1d(3)) and batchnorm_layers(nn.Sequential(bt.BatchNorm1d(3)))


def test_as_model_input_follows_the_model_dtype():
    x = torch.zeros(2, 3)
    assert as_model_input(x, nn.Linear(3, 1)) is x
    assert as_model_input(x, nn.Linear(3, 1).double()).dtype == torch.float64
    assert as_model_input(x.numpy(), nn.Identity()).dtype == torch.float32
