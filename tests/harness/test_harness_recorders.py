"""bncourse.recorders: one recorder family, as an evaluation hook and as a step callback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bncourse.models import hidden_preactivations, mlp
from bncourse.normalizers import NoisyBatchNorm1d
from bncourse.recorders import ActivationRecorder, PercentileRecorder, first_units, module_outputs
from bncourse.training import set_seed, train

torch.set_num_threads(1)


def test_percentile_recorder_matches_numpy(digits, sigmoid_bn_mlp):
    m = sigmoid_bn_mlp
    module = hidden_preactivations(m)[-1]
    rec = PercentileRecorder(module, unit=3, q=(15, 50, 85))
    x = torch.from_numpy(digits.x_test)
    rec.record(m, x, step=0)
    m.eval()
    with torch.no_grad():
        h = m.hidden1(x)
        pre = m.hidden2.norm(m.hidden2.linear(h))[:, 3].double().numpy()
    np.testing.assert_allclose(rec.percentiles[0], np.percentile(pre, [15, 50, 85]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rec.spread(), [np.percentile(pre, 85) - np.percentile(pre, 15)], rtol=1e-5)
    assert m.training is False  # mode restored (was eval)


def test_percentile_recorder_as_train_hook(digits, sigmoid_bn_mlp):
    m = sigmoid_bn_mlp
    rec = PercentileRecorder(hidden_preactivations(m)[-1], unit=0)
    act = ActivationRecorder(m.hidden1.act, reduce=lambda out: float(out.mean()))
    h = train(m, digits, steps=30, batch_size=20, eval_every=10, eval_subset=150, hooks=[rec, act])
    assert rec.steps == [0, 10, 20, 30] == act.steps
    assert rec.percentiles.shape == (4, 3)
    assert np.all(np.diff(rec.percentiles, axis=1) >= 0)  # 15th <= 50th <= 85th
    assert all(0 < v < 1 for v in act.values)  # sigmoid outputs
    # the last record is the final model's percentiles on the first 150 test images
    again = PercentileRecorder(hidden_preactivations(m)[-1], unit=0)
    again.record(m, digits.x_test[:150], step=30)
    np.testing.assert_allclose(again.percentiles[0], rec.percentiles[-1], rtol=1e-6)
    assert h.evals[-1]["step"] == 30


def test_the_same_recorder_class_as_a_step_callback_on_a_fixed_batch(digits):
    """As a step callback with x= and at=: records at the chosen steps, in the model's training mode,
    and the run is bit-identical to one without the recorder (noise draws, BN buffers, batches)."""
    x_fixed = torch.from_numpy(digits.x_val[:40])

    def run(record: bool):
        set_seed(5)
        m = mlp([64, 16, 16, 10], activation="relu", norm=NoisyBatchNorm1d)
        pre = hidden_preactivations(m)
        rec = ActivationRecorder({"l1": pre[0], "l2": pre[1]}, first_units(3), x=x_fixed, at=[2, 3, 6],
                                 mode="current")
        h = train(m, digits, steps=8, batch_size=32, seed=5, step_callback=rec if record else None)
        return m, h, rec

    m1, h1, rec = run(True)
    m2, h2, _ = run(False)
    assert h1.train_loss == h2.train_loss
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert rec.steps == [2, 3, 6]
    assert [r.shape for r in rec.records["l1"]] == [(40, 3)] * 3 and len(rec.records["l2"]) == 3
    with pytest.raises(AttributeError, match="one watched module"):
        rec.values


def test_modes_eval_train_and_current():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)
    x = torch.randn(16, 5)
    h = model[0](x).detach()
    for mode, expected in (("eval", (h - 3.0) / (1 + 1e-5) ** 0.5),
                           ("train", F.batch_norm(h, None, None, model[1].weight, model[1].bias, training=True))):
        for start in (True, False):
            model.train(start)
            rec = ActivationRecorder(model[1], mode=mode)
            rec.record(model, x, step=0)
            torch.testing.assert_close(torch.from_numpy(rec.values[0]), expected.detach(), rtol=1e-5, atol=1e-5)
            assert model.training is start and model[1].running_mean[0] == 3.0  # left as found
    model.eval()
    cur = ActivationRecorder(model[1], mode="current")
    cur.record(model, x, step=0)
    np.testing.assert_allclose(cur.values[0], ((h - 3.0) / (1 + 1e-5) ** 0.5).numpy(), rtol=1e-5, atol=1e-5)


def test_module_outputs_in_train_mode_include_the_noise_and_leave_the_model():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 8), NoisyBatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(32, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    out = module_outputs(model, {"bn": model[1]}, x)["bn"]
    plain = F.batch_norm(model[0](x), None, None, model[1].weight, model[1].bias, training=True).detach()
    assert out.shape == (32, 8)
    assert (out - plain).abs().max() > 0.05
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.eval()
    out_eval = module_outputs(model, {"bn": model[1]}, x)["bn"]
    torch.testing.assert_close(out_eval, model[1](model[0](x)).detach(), rtol=1e-6, atol=1e-6)


def test_first_units_keeps_the_leading_flattened_features():
    out = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(first_units(5)(out), out.reshape(2, -1)[:, :5].numpy())
    with pytest.raises(ValueError, match="positive integer"):
        first_units(0)


def test_recorder_errors(sigmoid_bn_mlp):
    m = sigmoid_bn_mlp
    with pytest.raises(ValueError, match="percentiles"):
        PercentileRecorder(m.hidden1.norm, q=(50, 101))
    rec = PercentileRecorder(m.hidden1.norm, unit=99)
    with pytest.raises(IndexError, match="unit 99"):
        rec.record(m, torch.zeros(4, 64), step=0)
    stranger = ActivationRecorder(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="ran 0 times"):
        stranger.record(m, torch.zeros(4, 64), step=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        ActivationRecorder(m.hidden1.norm, mode="training")
    with pytest.raises(TypeError, match="nn.Module"):
        ActivationRecorder({"a": "not a module"})
    with pytest.raises(ValueError, match="no inputs"):
        ActivationRecorder(m.hidden1.norm)(m, 0)
