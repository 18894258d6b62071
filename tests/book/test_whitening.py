"""Tests of bncourse.whitening (chapter 1): PCA/ZCA whitening, its effect on gradient descent, and the
two simplifications BatchNorm makes (per-feature statistics, mini-batch statistics)."""
import numpy as np
import pytest

from bncourse.scaling import least_squares_problem
from bncourse.whitening import (
    batch_statistics_error,
    eigh_gradient_is_finite,
    eigh_gradient_norm,
    whiten,
    whitening_descent,
    whitening_matrix,
)

SEEDS = range(5)


def correlated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.5, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 3.0]])
    return rng.normal(size=(n, 3)) @ mix + np.array([1.0, -2.0, 5.0])


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitened_covariance_is_identity(method):
    z = whiten(correlated(), method)
    # a few float64 roundings of O(1) numbers per entry: 1e-12 leaves a 1000x margin over 2.2e-16 * d * n^0.5
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(3), atol=1e-12)


def test_zca_is_symmetric_pca_is_rotation_of_it():
    x = correlated()
    W_zca, mu = whitening_matrix(x, "zca")
    W_pca, mu2 = whitening_matrix(x, "pca")
    np.testing.assert_allclose(W_zca, W_zca.T, atol=1e-12)
    np.testing.assert_array_equal(mu, mu2)
    R = W_pca @ np.linalg.inv(W_zca)  # PCA = R @ ZCA with R orthogonal
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-10)
    # ZCA is the whitening closest to the centred data (zero-phase): it beats PCA in squared distance
    xc = x - mu
    assert np.sum((whiten(x, "zca") - xc / xc.std(0)) ** 2) < np.sum((whiten(x, "pca") - xc / xc.std(0)) ** 2)


def test_singular_covariance_refused_and_eps_regularizes():
    x = correlated(n=50)
    dup = np.column_stack([x, x[:, :1]])  # a duplicated feature: covariance rank 3 of 4
    with pytest.raises(ValueError, match="singular"):
        whitening_matrix(dup)
    with pytest.raises(ValueError, match="singular"):
        whitening_matrix(x[:2])  # 2 samples, 3 features
    z = whiten(dup, eps=1e-3)
    assert np.all(np.isfinite(z))
    with pytest.raises(ValueError, match="method"):
        whitening_matrix(x, "cholesky")
    with pytest.raises(ValueError, match="eps"):
        whitening_matrix(x, eps=-1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_whitening_makes_descent_converge_in_one_step(seed):
    result = whitening_descent(correlation=0.95, seed=seed)
    raw, std, white = (result.runs[k] for k in ("raw", "standardized", "whitened"))
    # standardizing leaves kappa = (1 + rho) / (1 - rho) of the sample correlation rho
    Z = result.problems["standardized"].X
    rho = np.corrcoef(Z.T)[0, 1]
    assert std.condition_number == pytest.approx((1 + rho) / (1 - rho), rel=1e-9)
    assert std.condition_number > 20 and raw.condition_number > 10 * std.condition_number
    # whitening: H = I, so one step of size 1 / lambda_max = 1 reaches the minimum
    assert white.condition_number == pytest.approx(1.0, abs=1e-9)
    assert white.steps == 1
    assert raw.steps > 10 * std.steps > 100 * white.steps
    # each run ends at its problem's minimum (loss gap 1e-6 of the start: predictions within 2e-2)
    for name, p in result.problems.items():
        np.testing.assert_allclose(p.X @ result.runs[name].path[-1], p.X @ p.w_star, atol=2e-2)


def test_whitened_problem_weights_are_consistent():
    result = whitening_descent(seed=0)
    raw, white = result.problems["raw"], result.problems["whitened"]
    # the noiseless predictions agree: centred X w_true == Z w_true_z
    np.testing.assert_allclose((raw.X - raw.X.mean(0)) @ raw.w_true, white.X @ white.w_true, atol=1e-10)


def test_batch_statistics_error_shrinks_like_one_over_sqrt_batch():
    x = least_squares_problem(n=20_000, scales=(1.0, 10.0, 3.0), w_true=(1.0, 1.0, 1.0)).X
    sizes = [4, 16, 64, 256, 1024]
    errs = [batch_statistics_error(x, sizes, n_batches=200, seed=s) for s in SEEDS]
    for e in errs:
        assert np.all(np.diff(e.mean_error) < 0) and np.all(np.diff(e.std_error) < 0)
        # sqrt(B) * error of the mean is about 1 (the std of a mean of B draws); sampling without
        # replacement from 20 000 shrinks it by at most 3 % at B = 1024; 200 batches -> +-10 % spread
        np.testing.assert_allclose(e.mean_error * np.sqrt(e.batch_sizes), 1.0, atol=0.15)
        assert e.mean_error[-2] < 0.08  # B = 256: the batch mean is within a tenth of a std


def test_batch_statistics_error_rejects_bad_sizes():
    x = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="batch sizes"):
        batch_statistics_error(x, [1])
    with pytest.raises(ValueError, match="batch sizes"):
        batch_statistics_error(x, [11])
    with pytest.raises(ValueError, match="constant"):
        batch_statistics_error(np.column_stack([x[:, 0], np.ones(10)]), [4])


def test_eigh_gradient_undefined_at_tied_eigenvalues():
    assert eigh_gradient_is_finite([1.0, 2.0, 3.0])
    assert not eigh_gradient_is_finite([1.0, 1.0, 3.0])
    assert not eigh_gradient_is_finite([2.0, 2.0])
    with pytest.raises(ValueError):
        eigh_gradient_is_finite([1.0])


def test_eigh_gradient_grows_like_one_over_the_eigenvalue_gap():
    gaps = np.array([1.0, 1e-2, 1e-4, 1e-6, 1e-8])
    norms = eigh_gradient_norm(gaps)
    assert np.all(np.isfinite(norms)) and np.all(np.diff(norms) > 0)
    # the 1/(lam_i - lam_j) term dominates for small gaps: gap * norm tends to a constant (here sqrt(2), from the
    # two off-diagonal entries of the gradient); the rest of the gradient is O(1), i.e. a relative O(gap) change
    scaled = norms[2:] * gaps[2:]
    np.testing.assert_allclose(scaled, np.sqrt(2.0), rtol=1e-3)
    assert norms[-1] > 1e8                              # a gap of 1e-8 gives a gradient norm above 1e8
    assert np.isnan(eigh_gradient_norm([0.0])[0])       # equal eigenvalues: no gradient at all


def test_eigh_gradient_norm_in_float32_cannot_resolve_tiny_gaps():
    import torch

    # float32 rounds 1 + 1e-8 to 1 (u = 2^-24 = 6e-8): the eigenvalues tie and the gradient is NaN
    assert np.isnan(eigh_gradient_norm([1e-8], dtype=torch.float32)[0])
    np.testing.assert_allclose(eigh_gradient_norm([1e-2], dtype=torch.float32), eigh_gradient_norm([1e-2]), rtol=1e-4)


@pytest.mark.parametrize("bad", [[], [-1e-3], [float("nan")], [[1e-2]]])
def test_eigh_gradient_norm_refuses_bad_gaps(bad):
    with pytest.raises(ValueError, match="gaps"):
        eigh_gradient_norm(bad)


def test_eigh_gradient_norm_refuses_gaps_that_reach_the_third_eigenvalue():
    with pytest.raises(ValueError, match="high"):
        eigh_gradient_norm([2.5], low=1.0, high=3.0)
