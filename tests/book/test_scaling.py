"""Tests of bncourse.scaling (chapter 1): scalers, least-squares gradient descent, widget callback."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bncourse.scaling import (
    MinMaxScaler,
    StandardScaler,
    condition_number,
    gd_explorer,
    gradient_descent,
    hessian,
    least_squares_gradient,
    least_squares_loss,
    least_squares_problem,
    loss_grid,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
matrices = st.tuples(st.integers(2, 12), st.integers(1, 4)).flatmap(
    lambda s: arrays(np.float64, s, elements=finite)
)


# ------------------------------------------------------------------ scalers

def test_minmax_known_values_and_test_split_outside_range():
    x_train = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    s = MinMaxScaler().fit(x_train)
    np.testing.assert_allclose(s.transform(x_train), [[0, 0], [0.5, 1], [1, 0.5]], atol=1e-15)
    # test data are mapped with the TRAINING min/max, so they may leave [0, 1]
    np.testing.assert_allclose(s.transform(np.array([[6.0, 0.0]])), [[1.5, -0.5]], atol=1e-15)
    s2 = MinMaxScaler(feature_range=(-1, 1)).fit(x_train)
    np.testing.assert_allclose(s2.transform(x_train)[:, 0], [-1, 0, 1], atol=1e-15)


def test_standard_known_values_and_ddof():
    x = np.array([[1.0], [2.0], [3.0], [6.0]])
    s = StandardScaler().fit(x)
    assert s.mean_[0] == 3.0
    np.testing.assert_allclose(s.std_[0], np.sqrt(3.5))  # population variance (4+1+0+9)/4
    np.testing.assert_allclose(s.transform(x)[:, 0], (x[:, 0] - 3) / np.sqrt(3.5))
    s1 = StandardScaler(ddof=1).fit(x)
    np.testing.assert_allclose(s1.std_[0], np.sqrt(14 / 3))
    np.testing.assert_allclose(s1.transform(x).std(), np.sqrt(3 / 4))


@settings(max_examples=200, deadline=None)
@given(matrices)
def test_standard_scaler_properties(x):
    z = StandardScaler().fit_transform(x)
    assert np.all(np.isfinite(z))
    std = x.std(axis=0)
    # well-conditioned columns (std not tiny next to the values): exact moments up to rounding
    varying = std > 1e-6 * np.maximum(1, np.abs(x).max(axis=0))
    np.testing.assert_allclose(z.mean(axis=0)[varying], 0, atol=1e-8)
    np.testing.assert_allclose(z.std(axis=0)[varying], 1, rtol=1e-7)
    # constant features -> exactly 0, not NaN
    const = np.all(x == x[0], axis=0)
    assert np.all(z[:, const] == 0)
    s = StandardScaler().fit(x)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-9, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(matrices)
def test_minmax_scaler_properties(x):
    z = MinMaxScaler().fit_transform(x)
    assert np.all(np.isfinite(z))
    assert z.min() >= -1e-12 and z.max() <= 1 + 1e-12
    nonconst = x.max(axis=0) > x.min(axis=0)
    np.testing.assert_allclose(z.min(axis=0)[nonconst], 0, atol=1e-12)
    np.testing.assert_allclose(z.max(axis=0)[nonconst], 1, atol=1e-12)
    assert np.all(z[:, ~nonconst] == 0)  # constant feature -> lower end of the range
    s = MinMaxScaler().fit(x)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-9, atol=1e-9)


def test_transform_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal(0, 1, (100, 2))
    x_test = rng.normal(5, 3, (50, 2))
    s = StandardScaler().fit(x_train)
    z_test = s.transform(x_test)
    np.testing.assert_allclose(z_test, (x_test - x_train.mean(0)) / x_train.std(0))
    # the leak: fitting on train+test changes what the TRAIN data look like
    leaky = StandardScaler().fit(np.vstack([x_train, x_test]))
    assert np.abs(leaky.transform(x_train) - s.transform(x_train)).max() > 0.5


def test_one_outlier_squeezes_minmax_more_than_standardization():
    rng = np.random.default_rng(1)
    x = np.append(rng.normal(0, 1, 200), 100.0)[:, None]
    z_mm = MinMaxScaler().fit_transform(x)[:-1, 0]
    z_std = StandardScaler().fit_transform(x)[:-1, 0]
    assert z_mm.max() - z_mm.min() < 0.1  # inliers share < 10 % of [0, 1]
    assert z_std.std() < 0.2  # the outlier inflates the std five-fold+


@pytest.mark.parametrize("cls", [MinMaxScaler, StandardScaler])
def test_scaler_errors(cls):
    s = cls()
    with pytest.raises(RuntimeError, match="not fitted"):
        s.transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        s.fit(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        s.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="no samples"):
        s.fit(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="numeric"):
        s.fit(np.array([["a"], ["b"]]))
    s.fit(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match="3 features, but .* fitted on 2 features"):
        s.transform(np.zeros((4, 3)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="lo < hi"):
        MinMaxScaler(feature_range=(1, 0))
    with pytest.raises(ValueError, match="ddof"):
        StandardScaler(ddof=2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        StandardScaler(ddof=1).fit(np.ones((1, 2)))


# ------------------------------------------------------------------ least squares / GD

def test_gradient_matches_finite_differences_and_hessian():
    p = least_squares_problem(n=50, scales=(1.0, 3.0), seed=2)
    w = np.array([0.3, -0.7])
    g = least_squares_gradient(p.X, p.y, w)
    eps = 1e-6
    fd = [(least_squares_loss(p.X, p.y, w + eps * e) - least_squares_loss(p.X, p.y, w - eps * e)) / (2 * eps)
          for e in np.eye(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    np.testing.assert_allclose(hessian(p.X), p.X.T @ p.X / 50)
    np.testing.assert_allclose(least_squares_gradient(p.X, p.y, p.w_star), 0, atol=1e-10)


def test_loss_grid_matches_pointwise_loss():
    p = least_squares_problem(n=30, seed=3)
    w1, w2 = np.linspace(-1, 3, 5), np.linspace(-2, 1, 4)
    Z = loss_grid(p.X, p.y, w1, w2)
    assert Z.shape == (4, 5)
    assert Z[2, 3] == pytest.approx(float(least_squares_loss(p.X, p.y, np.array([w1[3], w2[2]]))))


def test_condition_number_of_scaled_features():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((5000, 2))
    G = (G - G.mean(0)) / G.std(0)
    assert condition_number(G) == pytest.approx(1.0, abs=0.1)
    assert condition_number(G * [1.0, 10.0]) == pytest.approx(100.0, rel=0.1)
    assert condition_number(np.array([[1.0, 2.0], [2.0, 4.0]])) == float("inf")


def test_gd_on_quadratic_exact_iterates():
    # H = diag(1, 4) (X = diag(1, 2) * sqrt(n)), one GD step with lr 0.25 from 0 is lr * X^T y / n
    X = np.array([[np.sqrt(2.0), 0.0], [0.0, 2 * np.sqrt(2.0)]])
    y = np.array([1.0, 1.0])
    r = gradient_descent(X, y, lr=0.25, tol=1e-10, max_steps=3)
    np.testing.assert_allclose(r.path[1], 0.25 * X.T @ y / 2)
    assert r.condition_number == pytest.approx(4.0)
    # the error in eigen-direction i contracts by |1 - lr * lambda_i| each step
    err = r.path - r.w_star
    np.testing.assert_allclose(err[2], err[1] * np.array([0.75, 0.0]), atol=1e-12)


def test_gd_converges_to_least_squares_solution():
    p = least_squares_problem(seed=4)
    r = gradient_descent(p.X, p.y, tol=1e-10)
    assert r.converged and not r.diverged
    np.testing.assert_allclose(r.path[-1], p.w_star, rtol=1e-3, atol=1e-4)
    assert np.all(np.diff(r.losses) <= 1e-12)  # lr = 1/L decreases the loss monotonically


def test_gd_diverges_above_two_over_L():
    p = least_squares_problem(seed=0)
    r = gradient_descent(p.X, p.y, lr_factor=2.1, max_steps=10_000)
    assert r.diverged and not r.converged and r.steps is None
    assert gradient_descent(p.X, p.y, lr_factor=1.9).converged


def test_gd_errors():
    X, y = np.ones((3, 2)), np.ones(3)
    with pytest.raises(ValueError, match="y must have shape"):
        gradient_descent(X, np.ones(4))
    with pytest.raises(ValueError, match="w0"):
        gradient_descent(X + np.eye(3, 2), y, w0=[0.0])
    with pytest.raises(ValueError, match="lr must be positive"):
        gradient_descent(X, y, lr=-1)
    with pytest.raises(ValueError, match="scales"):
        least_squares_problem(scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="2 features"):
        loss_grid(np.ones((3, 3)), y, [0], [0])


@pytest.mark.parametrize("seed", range(5))
def test_standardized_features_converge_much_faster(seed):
    _, raw = gd_explorer(feature_scale=10.0, seed=seed)
    _, std = gd_explorer(feature_scale=10.0, standardize=True, seed=seed)
    assert raw.converged and std.converged
    assert raw.steps >= 20 * std.steps
    assert std.condition_number < 5 < 50 < raw.condition_number


def test_steps_grow_with_condition_number():
    runs = [gd_explorer(feature_scale=s, seed=0)[1] for s in (1.0, 3.0, 10.0, 30.0)]
    kappas = [r.condition_number for r in runs]
    steps = [r.steps for r in runs]
    assert kappas == sorted(kappas) and steps == sorted(steps)
    # GD with lr = 1/L cuts the loss gap by tol in about (kappa / 2) * ln(1/tol) steps
    ratios = np.array(steps) / (np.array(kappas) / 2 * np.log(1e6))
    assert np.all((ratios > 0.5) & (ratios < 1.2)), ratios


def test_standardized_problem_has_same_predictions():
    p = least_squares_problem(seed=5)
    q = p.standardized()
    np.testing.assert_allclose(q.X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(q.X.std(0), 1)
    # both least-squares fits give the same predictions up to the intercept
    pred_raw = p.X @ p.w_star
    pred_std = q.X @ q.w_star + p.y.mean()
    assert np.corrcoef(pred_raw, pred_std)[0, 1] > 0.9999
