"""bncourse.finetune: the freezing strategies do what they say, and the fine-tuning claims of the chapter."""
import numpy as np
import pytest
import torch
from torch import nn

from bncourse.data import load_images
from bncourse import claims
from bncourse.finetune import STRATEGIES, StatsFrozenBatchNorm, finetune_experiment, prepare_finetune, shift_domain
from bncourse.models import mlp
from bncourse.pitfalls import FrozenBatchNorm

torch.set_num_threads(1)


def _model():
    torch.manual_seed(0)
    model = mlp([6, 5, 3], norm="bn")
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 6) * 2 + 1)
    return model


def test_stats_frozen_batchnorm_ignores_train_mode_and_trains_affine():
    model = prepare_finetune(_model(), "frozen stats")
    bn = model.hidden1.norm
    assert isinstance(bn, StatsFrozenBatchNorm)
    stats = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(8, 6)
    model.train()
    y_train = model(x)
    model.eval()
    torch.testing.assert_close(y_train, model(x), rtol=0, atol=0)    # same computation in both modes
    y_train.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])


def test_frozen_stats_equals_eval_mode_original():
    original = _model().eval()
    x = torch.randn(5, 6)
    for strategy in ("frozen stats", "frozen BN"):
        model = prepare_finetune(original, strategy).train()
        with torch.no_grad():
            torch.testing.assert_close(model(x), original(x), rtol=1e-6, atol=1e-6)
    assert isinstance(prepare_finetune(original, "frozen BN").hidden1.norm, FrozenBatchNorm)
    assert isinstance(prepare_finetune(original, "train").hidden1.norm, nn.BatchNorm1d)
    with pytest.raises(ValueError, match="unknown strategy"):
        prepare_finetune(original, "freeze")


def test_shift_domain():
    x = np.linspace(0, 1, 5, dtype=np.float32)
    np.testing.assert_allclose(shift_domain(x), 0.4 * x + 0.5, rtol=1e-6)
    assert shift_domain(x).dtype == np.float32


def test_finetune_claims_over_seeds():
    try:
        data = load_images("fashion-mnist", verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    seeds = (0, 1, 2)
    results = [finetune_experiment(data, seed) for seed in seeds]
    for r in results:
        assert set(r) == {("source model", 0)} | {(s, b) for s in STRATEGIES for b in (2, 32)}
    ft = {key: np.array([r[key] for r in results]) for key in results[0]}
    # the chapter's claims, as statistics over the seeds (chapter 7 checks them on five seeds)
    # the shift breaks the source model, far below fine-tuned BN
    assert claims.greater("t-ft-adapt", "", ft["train", 32], ft["source model", 0], by=0.3, show=False).held
    # batch 32: adapting the statistics beats keeping the source ones (the chapter's margin 0.1 needs its five
    # seeds; with three, the interval is only asked to clear 0)
    best_frozen = np.maximum(ft["frozen stats", 32], ft["frozen BN", 32])
    assert claims.greater("t-ft-frozen", "", ft["train", 32], best_frozen, by=0.0, show=False).held
    # batch 2 costs trained BN more than it costs frozen statistics (the chapter asks 0.1 more over five seeds)
    assert claims.greater("t-ft-small", "", ft["train", 32] - ft["train", 2],
                          ft["frozen stats", 32] - ft["frozen stats", 2], by=0.0, show=False).held
    # trained BN loses at batch 2: its mean loss (three seeds are too few for the interval the chapter uses)
    assert np.mean(ft["train", 32] - ft["train", 2]) > 0.05


def test_finetune_learning_rate_rule_is_checked():
    with pytest.raises(ValueError, match="lr_rule must be 'sqrt' or 'linear'"):
        finetune_experiment(None, 0, lr_rule="cubic")
