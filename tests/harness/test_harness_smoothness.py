"""bncourse.smoothness: chapter 6's experiment, and its claims at a small scale (digits, 7 Linear layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bncourse.landscape import activation_drift
from bncourse.smoothness import VARIANTS, final_loss, ics_median, smoothness_run
from bncourse.history import History

torch.set_num_threads(1)

SIZES = [64] + [64] * 6 + [10]


@pytest.fixture(scope="module")
def tensors(digits):
    return torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train), (digits.x_test, digits.y_test)


@pytest.fixture(scope="module", params=[0, 1])
def runs(request, tensors):
    x, y, test = tensors
    return {v: smoothness_run(v, x, y, test, sizes=SIZES, steps=150, batch_size=64, seed=request.param, every=25,
                              watch=(2, 5) if v == "noisy BN" else ())
            for v in ("standard", "BN", "noisy BN", "standard + noise")}


def test_bn_smooths_the_landscape(runs):
    """Santurkar et al.'s Fig. 4 as the chapter asserts it (digits, 3 seeds: loss range 7.3-54x,
    gradient predictiveness 5.3-15x), with gradient norms of the same order."""
    std, bn = runs["standard"].probe.summary(), runs["BN"].probe.summary()
    assert std["loss_range"] > 4 * bn["loss_range"]
    assert std["grad_predictiveness"] > 1.8 * bn["grad_predictiveness"]
    assert 0.4 < std["grad_norm"] / bn["grad_norm"] < 2.5  # 1.35-1.76: smoothness is not a gradient-scale effect


def test_noisy_bn_trains_where_the_same_noise_without_bn_does_not(runs):
    """The chapter's noisy-BN claim (digits, 3 seeds: loss ratio 0.07-0.08)."""
    assert runs["noisy BN"].final_loss(50) < 0.75 * runs["standard + noise"].final_loss(50)


def test_bn_has_larger_ics_than_the_standard_network_at_initialization(runs):
    """Definition 2.1's ICS at step 0, layer 2 (digits, 3 seeds: 82-148x)."""
    assert runs["BN"].probe.ics_l2[0][1] > 50 * runs["standard"].probe.ics_l2[0][1]
    l2, cos, gn = ics_median(runs["BN"].probe, 2)
    assert l2 > 0 and -1 <= cos <= 1 and gn > 0


def test_the_run_records_what_the_chapter_plots(runs):
    run = runs["noisy BN"]
    history, probe, trace = run  # unpacks like the chapter's tuple
    assert len(history.train_loss) == 150 and history.final("test_acc") > 0.5
    assert probe.steps == [0, 25, 50, 75, 100, 125, 150]
    assert trace.steps == list(range(1, 151))
    assert [r.shape for r in trace.records["layer 2"][:2]] == [(64, 8)] * 2
    assert activation_drift(trace.records["layer 5"]) > 0
    assert runs["standard"].trace is None  # nothing watched, nothing recorded
    assert final_loss(history, 50) == pytest.approx(np.mean(history.train_loss[-50:]))


def test_recording_does_not_change_the_run(tensors, runs):
    x, y, test = tensors
    seed = runs["BN"].probe.seed
    bare = smoothness_run("BN", x, y, test, sizes=SIZES, steps=150, batch_size=64, seed=seed, every=10**6, ics=False)
    assert bare.history.train_loss == runs["BN"].history.train_loss


def test_variants_and_errors(tensors):
    x, y, test = tensors
    assert list(VARIANTS) == ["standard", "BN", "noisy BN", "standard + noise", "l1", "l2", "linf"]
    with pytest.raises(ValueError, match="unknown variant 'batchnorm'"):
        smoothness_run("batchnorm", x, y, test)
    with pytest.raises(ValueError, match="watch layer 7 out of range"):
        smoothness_run("BN", x, y, test, sizes=SIZES, watch=(7,))
    with pytest.raises(ValueError, match="no training steps"):
        final_loss(History())


def test_a_run_is_a_named_tuple(runs):
    run = runs["BN"]
    assert run[0] is run.history and run[1] is run.probe and run[2] is run.trace
