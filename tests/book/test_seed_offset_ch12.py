"""BNCOURSE_SEED_OFFSET moves the random draws of chapters 1 and 2's generators: seed s with offset k draws what
seed s + k draws without one, so the chapters' claims can be checked on seeds nobody chose them on."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from bncourse.scaling import least_squares_problem
from bncourse.seeding import SEED_OFFSET_ENV
from bncourse.shift import (
    concept_shift_data,
    covariate_shift_data,
    domain_classifier_auc,
    gender_shift_data,
    label_shift_data,
    mmd_permutation_test,
)
from bncourse.whitening import batch_statistics_error

_X = np.random.default_rng(7).normal(size=(60, 2))
_Y = np.random.default_rng(8).normal(0.3, 1.0, size=(60, 2))

DRAWS: dict[str, Callable[[int], Any]] = {
    "least_squares_problem": lambda s: least_squares_problem(n=20, seed=s).X,
    "batch_statistics_error": lambda s: batch_statistics_error(_X, [4, 8], n_batches=5, seed=s).mean_error,
    "covariate_shift_data": lambda s: covariate_shift_data(n_source=10, n_target=10, seed=s).x_target,
    "label_shift_data": lambda s: label_shift_data(n_source=10, n_target=10, seed=s).x_source,
    "concept_shift_data": lambda s: concept_shift_data(n_source=10, n_target=10, seed=s).y_target,
    "gender_shift_data": lambda s: gender_shift_data(n_source=10, n_target=10, seed=s).x_source,
    "mmd_permutation_test": lambda s: mmd_permutation_test(_X[:20], _Y[:20], n_permutations=19, seed=s).p_value,
    "domain_classifier_auc": lambda s: domain_classifier_auc(_X, _Y, seed=s),
}


@pytest.mark.parametrize("name", list(DRAWS))
def test_offset_shifts_the_draws(monkeypatch, name):
    draw = DRAWS[name]
    monkeypatch.delenv(SEED_OFFSET_ENV, raising=False)
    base, later = draw(2), draw(5)
    np.testing.assert_array_equal(draw(2), base)               # deterministic without an offset
    monkeypatch.setenv(SEED_OFFSET_ENV, "3")
    np.testing.assert_array_equal(draw(2), later)              # seed 2 with offset 3 is seed 5


@pytest.mark.parametrize("name", ["least_squares_problem", "covariate_shift_data", "gender_shift_data"])
def test_offset_changes_the_draws(monkeypatch, name):
    monkeypatch.delenv(SEED_OFFSET_ENV, raising=False)
    base = DRAWS[name](0)
    monkeypatch.setenv(SEED_OFFSET_ENV, "100")
    assert not np.array_equal(DRAWS[name](0), base)
