"""The bug-clinic detectors (bncourse.pitfalls): each bug is found, the fix passes, and the
detectors leave the model exactly as it was."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from bncourse import pitfalls as pf

torch.set_num_threads(1)


def _mlp(bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5, bias=bias), nn.BatchNorm1d(5), nn.ReLU(),
                         nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Linear(4, 3))


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and \
        [m.training for m in a.modules()] == [m.training for m in b.modules()]


# ---------------------------------------------------------------- bias before BN
def test_bias_before_bn_finds_exactly_the_redundant_biases():
    found = pf.bias_before_bn(_mlp(bias=True))
    assert len(found) == 1 and found[0].startswith("0 (Linear) -> 1 (BatchNorm1d)")
    assert pf.bias_before_bn(_mlp(bias=False)) == []
    conv = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), nn.ReLU())
    assert pf.bias_before_bn(conv) == ["0.0 (Conv2d) -> 0.1 (BatchNorm2d): bias is redundant before "
                                       "BatchNorm; use bias=False"]
    # an activation in between makes the bias meaningful
    assert pf.bias_before_bn(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.BatchNorm1d(3))) == []


def test_bias_before_bn_really_has_zero_gradient():
    model = _mlp(bias=True).double().train()
    x = torch.randn(16, 6, dtype=torch.float64)
    model(x).pow(2).sum().backward()
    assert model[0].bias.grad.abs().max() < 1e-12
    assert model[0].weight.grad.abs().max() > 1e-3
    assert model[6].bias.grad.abs().max() > 1e-3       # not before a BN: a real gradient


# ---------------------------------------------------------------- forgetting eval()
def test_batch_dependence_train_vs_eval_and_model_untouched():
    model = _mlp()
    x = torch.randn(8, 6)
    model.train()
    model(x)                                        # non-trivial running stats
    before = copy.deepcopy(model)
    assert pf.batch_dependence(model, x) > 1e-2
    assert _same_state(model, before)
    assert pf.bn_in_train_mode(model) == ["1", "4"]
    model.eval()
    assert pf.batch_dependence(model, x, index=3) == 0.0
    assert pf.bn_in_train_mode(model) == []
    assert _same_state(model, before.eval())


def test_batch_dependence_ignores_dropout_randomness():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x = torch.randn(8, 6)
    state = torch.get_rng_state()
    assert pf.batch_dependence(model, x) == 0.0            # per-sample model, even with dropout active
    assert torch.equal(torch.get_rng_state(), state)        # the caller's random stream is untouched
    model.add_module("bn", nn.BatchNorm1d(3))
    assert pf.batch_dependence(model, x) > 1e-2


def test_batch_dependence_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        pf.batch_dependence(_mlp(), torch.randn(1, 6))
    with pytest.raises(ValueError, match="out of range"):
        pf.batch_dependence(_mlp(), torch.randn(4, 6), index=4)
    with pytest.raises(ValueError, match="others must have shape"):
        pf.batch_dependence(_mlp(), torch.randn(4, 6), others=torch.randn(2, 6))


# ---------------------------------------------------------------- batch of one
def test_last_batch_size_predicts_the_batch_of_one_error():
    n, bs = 1001, 100
    assert pf.last_batch_size(n, bs) == 1
    assert pf.last_batch_size(n, bs, drop_last=True) is None
    assert pf.last_batch_size(1000, 100) is None and pf.last_batch_size(1003, 100) == 3
    data = torch.utils.data.TensorDataset(torch.randn(n, 6))
    batches = list(torch.utils.data.DataLoader(data, batch_size=bs))
    model = _mlp().train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        model(batches[-1][0])
    with pytest.raises(ValueError):
        pf.last_batch_size(10, 0)


# ---------------------------------------------------------------- frozen gamma/beta, moving stats
def test_frozen_bn_stats_moving_and_the_fixes():
    model = _mlp()
    x = torch.randn(16, 6) * 2 + 1
    for m in model.modules():
        if pf.is_batchnorm(m):
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
    model.train()
    before = copy.deepcopy(model)
    assert pf.frozen_bn_stats_moving(model, x) == ["1", "4"]
    assert _same_state(model, before)
    # fix 1: BN modules in eval while the rest trains
    for m in model.modules():
        if pf.is_batchnorm(m):
            m.eval()
    assert pf.frozen_bn_stats_moving(model, x) == []
    # ... undone by model.train(), which is why fix 2 exists
    model.train()
    assert pf.frozen_bn_stats_moving(model, x) == ["1", "4"]
    # fix 2: FrozenBatchNorm, immune to train()
    reference = copy.deepcopy(model).eval()
    pf.freeze_batchnorm(model)
    model.train()
    assert pf.frozen_bn_stats_moving(model, x) == []
    assert isinstance(model[1], pf.FrozenBatchNorm) and not list(model[1].parameters())
    torch.testing.assert_close(model(x), reference(x), rtol=1e-6, atol=1e-6)


def test_frozen_bn_only_reports_frozen_layers():
    model = _mlp().train()
    assert pf.frozen_bn_stats_moving(model, torch.randn(8, 6)) == []   # trainable BN: stats may move


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 4)])
def test_frozen_batchnorm_equals_eval_batchnorm(shape):
    bn = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[len(shape)](3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    bn.train()(torch.randn(*shape, dtype=torch.float64) * 3 + 2)
    x = torch.randn(*shape, dtype=torch.float64)
    frozen = pf.FrozenBatchNorm.from_batchnorm(bn)
    assert frozen.running_var.dtype == torch.float64
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3"):
        frozen(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        pf.FrozenBatchNorm.from_batchnorm(nn.BatchNorm1d(3, track_running_stats=False))


# ---------------------------------------------------------------- E[x^2] - E[x]^2
def test_naive_variance_cancels_at_large_offset():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.01, size=(256, 4))
    true = base.var(axis=0)                                 # float64 two-pass, ~1e-4
    x = (base + 1e4).astype(np.float32)
    naive = pf.naive_variance(x)
    two_pass = np.var(x, axis=0)
    assert np.all(np.abs(naive - true) > 0.5 * true)        # rounding noise (0 or negative included)
    assert np.all(np.abs(two_pass - true) < 0.3 * true)     # limited only by float32 storage of x
    small = base.astype(np.float32)                         # no offset: both fine
    np.testing.assert_allclose(pf.naive_variance(small), true, rtol=1e-3)
    with pytest.raises(TypeError, match="floating-point"):
        pf.naive_variance(np.arange(4))
