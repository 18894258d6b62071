"""Chapter 1 machinery: feature scaling and why it matters to gradient descent.

Two scalers with the ``fit`` / ``transform`` protocol (statistics are *fitted on the training split
only* and then applied unchanged to any other split):

* :class:`MinMaxScaler` -- ``x' = lo + (x - min) / (max - min) * (hi - lo)``: the training data land
  exactly in ``[lo, hi]`` (default ``[0, 1]``).
* :class:`StandardScaler` -- ``z = (x - mean) / std``: the training data get mean 0 and standard
  deviation 1 (population std, ``ddof=0``, like BatchNorm's normalization and scikit-learn).

A feature that is constant on the training split has zero range / zero std; it is mapped to ``lo``
(min-max) or to 0 (standardization) instead of producing NaN.

Gradient descent on a 2-feature least-squares problem (chapter 1's contour figure):

* :func:`least_squares_problem` draws ``X`` (n, 2) with very different feature scales and
  ``y = X w_true + noise``;
* :func:`gradient_descent` runs full-batch GD on ``L(w) = ||X w - y||^2 / (2 n)`` and returns the
  whole path and the number of steps until the loss gap fell below a relative tolerance;
* :func:`condition_number` of the Hessian ``X^T X / n`` -- GD with step ``1 / lambda_max`` needs about
  ``kappa * ln(1 / tol)`` steps, hence the cost of badly scaled features;
* :func:`gd_explorer` is the pure function behind the chapter's interactive widget
  (its figure: :func:`bncourse.plotting.plot_descent`).

The data draws are seeded with ``seed`` shifted by ``BNCOURSE_SEED_OFFSET`` (:mod:`bncourse.seeding`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bncourse.seeding import numpy_rng

__all__ = [
    "MinMaxScaler",
    "StandardScaler",
    "LeastSquaresProblem",
    "GDResult",
    "least_squares_problem",
    "least_squares_loss",
    "least_squares_gradient",
    "hessian",
    "condition_number",
    "gradient_descent",
    "loss_grid",
    "gd_explorer",
]


# ----------------------------------------------------------------------------------------------
# Scalers
# ----------------------------------------------------------------------------------------------

def _as_2d_finite(x: np.ndarray, what: str) -> np.ndarray:
    """Validate ``x`` as a finite (n, d) float array with n >= 1 and return it as float64."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D with shape (n_samples, n_features), got shape {arr.shape}; "
            "reshape a single feature with x.reshape(-1, 1)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{what} has no samples (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


class _Scaler:
    """Shared ``fit``/``transform`` plumbing; subclasses define ``_fit`` and the affine map.

    After ``fit`` every subclass holds ``offset_`` and ``scale_`` (both (d,)) with
    ``transform(x) = (x - offset_) / scale_ + shift_``.
    """

    offset_: np.ndarray
    scale_: np.ndarray
    shift_: float = 0.0
    n_features_: int

    def __init__(self) -> None:
        self._fitted = False

    def _fit(self, x: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, x: np.ndarray) -> "_Scaler":
        """Compute the statistics of ``x`` (n, d) -- the TRAINING split only. Returns ``self``."""
        arr = _as_2d_finite(x, "fit input")
        self.n_features_ = arr.shape[1]
        self._fit(arr)
        self._fitted = True
        return self

    def _check_transform_input(self, x: np.ndarray) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(x_train) first")
        arr = _as_2d_finite(x, "transform input")
        if arr.shape[1] != self.n_features_:
            raise ValueError(
                f"transform input has {arr.shape[1]} features, but {type(self).__name__} was "
                f"fitted on {self.n_features_} features"
            )
        return arr

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted map to ``x`` (m, d) -> (m, d) float64 (any split, any m)."""
        arr = self._check_transform_input(x)
        return (arr - self.offset_) / self.scale_ + self.shift_

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform`: (m, d) -> (m, d). Constant features come back as their value."""
        arr = self._check_transform_input(z)
        return (arr - self.shift_) * self.scale_ + self.offset_

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """``fit(x).transform(x)`` -- use it on the training split, then ``transform`` the others."""
        return self.fit(x).transform(x)


class MinMaxScaler(_Scaler):
    """Min-max normalization ``x' = lo + (x - min) / (max - min) * (hi - lo)`` per feature.

    Guarantees: the *training* data lie in ``[lo, hi]`` with both ends attained (for non-constant
    features). Other splits may fall outside. One outlier sets ``max`` and squeezes all other
    values into a small sub-interval.

    Attributes after ``fit``: ``data_min_``, ``data_max_`` (d,).
    """

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        lo, hi = (float(v) for v in feature_range)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
            raise ValueError(f"feature_range must be (lo, hi) with lo < hi, got {feature_range}")
        self.feature_range = (lo, hi)

    def _fit(self, x: np.ndarray) -> None:
        lo, hi = self.feature_range
        self.data_min_ = x.min(axis=0)
        self.data_max_ = x.max(axis=0)
        data_range = self.data_max_ - self.data_min_
        # Constant feature: range 0 -> divide by 1, so x - min = 0 maps to lo (no NaN).
        safe_range = np.where(data_range > 0, data_range, 1.0)
        self.offset_ = self.data_min_
        self.scale_ = safe_range / (hi - lo)
        self.shift_ = lo


class StandardScaler(_Scaler):
    """Z-score standardization ``z = (x - mean) / std`` per feature.

    Guarantees: the *training* data get mean 0 and std 1 (with ``ddof=0``, the population std, as
    in BatchNorm). The range is not bounded. ``ddof=1`` uses the sample std instead (then the
    population std of the transformed training data is ``sqrt((n-1)/n)``, not 1).

    Attributes after ``fit``: ``mean_``, ``std_`` (d,). A feature with std 0 is divided by 1.
    """

    def __init__(self, ddof: int = 0) -> None:
        super().__init__()
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof}")
        self.ddof = ddof

    def _fit(self, x: np.ndarray) -> None:
        if self.ddof == 1 and x.shape[0] < 2:
            raise ValueError("the sample std (ddof=1) needs at least 2 samples")
        self.mean_ = x.mean(axis=0)
        self.std_ = x.std(axis=0, ddof=self.ddof)
        # A constant column: its mean may differ from its value by rounding (1e-14), so centre it on
        # the value itself to map it to exactly 0; tiny stds from rounding count as constant.
        constant = np.all(x == x[0], axis=0)
        self.offset_ = np.where(constant, x[0], self.mean_)
        tiny = 1e-12 * np.maximum(1.0, np.abs(self.mean_))
        self.scale_ = np.where(constant | (self.std_ <= tiny), 1.0, self.std_)
        self.shift_ = 0.0


# ----------------------------------------------------------------------------------------------
# Gradient descent on least squares
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LeastSquaresProblem:
    """``X`` (n, d), ``y`` (n,), the generating weights ``w_true`` (d,) and the minimizer ``w_star`` (d,)."""

    X: np.ndarray
    y: np.ndarray
    w_true: np.ndarray
    w_star: np.ndarray

    def standardized(self) -> "LeastSquaresProblem":
        """The same data with standardized features (fitted on ``X``) and a centred target.

        Centring ``y`` removes the intercept, which standardized (mean-0) features would otherwise
        need; the weights are then in standardized units.
        """
        Z = StandardScaler().fit_transform(self.X)
        yc = self.y - self.y.mean()
        w_star = np.linalg.lstsq(Z, yc, rcond=None)[0]
        w_true = self.w_true * self.X.std(axis=0)
        return LeastSquaresProblem(Z, yc, w_true, w_star)


def least_squares_problem(
    n: int = 200,
    scales: Sequence[float] = (1.0, 10.0),
    correlation: float = 0.5,
    w_true: Sequence[float] = (2.0, -0.3),
    noise: float = 0.5,
    seed: int = 0,
) -> LeastSquaresProblem:
    """Draw a least-squares problem whose features have very different scales.

    Features: ``X = G @ diag(scales)`` with rows of ``G`` standard normal with the given
    ``correlation`` (so feature j has mean 0 and std about ``scales[j]``); target
    ``y = X w_true + noise * eps``. Shapes: ``X`` (n, d), ``y`` (n,), d = ``len(scales)``.
    """
    scales_arr = np.asarray(scales, dtype=np.float64)
    w = np.asarray(w_true, dtype=np.float64)
    if scales_arr.ndim != 1 or scales_arr.size < 1 or np.any(scales_arr <= 0):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
    if w.shape != scales_arr.shape:
        raise ValueError(f"w_true has {w.size} entries but there are {scales_arr.size} features")
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlation must lie in (-1, 1), got {correlation}")
    d = scales_arr.size
    if n < d:
        raise ValueError(f"need n >= {d} samples for {d} features, got n={n}")
    rng = numpy_rng(seed)
    cov = np.full((d, d), correlation) + (1.0 - correlation) * np.eye(d)
    G = rng.standard_normal((n, d)) @ np.linalg.cholesky(cov).T
    X = G * scales_arr
    y = X @ w + noise * rng.standard_normal(n)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    return LeastSquaresProblem(X, y, w, w_star)


def least_squares_loss(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``||X w - y||^2 / (2 n)``; ``w`` is (d,) -> scalar, or (..., d) -> (...) for a grid of weights."""
    w = np.asarray(w, dtype=np.float64)
    r = w @ X.T - y  # (..., n)
    return 0.5 * np.mean(r * r, axis=-1)


def least_squares_gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gradient ``X^T (X w - y) / n`` of :func:`least_squares_loss`: (d,) -> (d,)."""
    return X.T @ (X @ w - y) / X.shape[0]


def hessian(X: np.ndarray) -> np.ndarray:
    """Hessian ``X^T X / n`` (d, d) of the least-squares loss (constant: the loss is quadratic)."""
    X = _as_2d_finite(X, "X")
    return X.T @ X / X.shape[0]


def _kappa(eig: np.ndarray) -> float:
    """``eig[-1] / eig[0]`` of ascending eigenvalues; ``inf`` when the smallest is 0 up to rounding."""
    return float(eig[-1] / eig[0]) if eig[0] > eig[-1] * 1e-15 else float("inf")


def condition_number(X: np.ndarray) -> float:
    """``lambda_max / lambda_min`` of the Hessian ``X^T X / n``; ``inf`` if it is singular."""
    return _kappa(np.linalg.eigvalsh(hessian(X)))


@dataclass
class GDResult:
    """Outcome of :func:`gradient_descent`.

    ``path`` (T+1, d) weights from ``w0`` on; ``losses`` (T+1,); ``steps`` = first step t with
    ``L(w_t) - L* <= tol * (L(w_0) - L*)`` or ``None`` if not reached; ``diverged`` when the loss
    blew up; ``lr`` the step size used; ``condition_number`` of the Hessian.
    """

    path: np.ndarray
    losses: np.ndarray
    steps: int | None
    converged: bool
    diverged: bool
    lr: float
    condition_number: float
    w_star: np.ndarray = field(repr=False)


def gradient_descent(
    X: np.ndarray,
    y: np.ndarray,
    lr: float | None = None,
    lr_factor: float = 1.0,
    w0: Sequence[float] | None = None,
    tol: float = 1e-6,
    max_steps: int = 100_000,
    record_every: int = 1,
) -> GDResult:
    """Full-batch gradient descent ``w <- w - lr * grad L(w)`` on ``L(w) = ||X w - y||^2 / (2 n)``.

    Parameters
    ----------
    X, y : ndarray
        Shapes ``(n, d)`` and ``(n,)``.
    lr : float, optional
        Step size; default ``lr_factor / lambda_max(X^T X / n)``. Convergence needs
        ``lr < 2 / lambda_max`` (``lr_factor < 2``); ``lr_factor = 1`` is the classical ``1/L`` step.
    w0 : ndarray, optional
        Start, shape ``(d,)``; default the origin.
    lr_factor : float
        Multiplies ``1 / lambda_max`` when ``lr`` is not given.
    tol : float
        Relative loss-gap tolerance defining ``steps``.
    max_steps : int
        Give up after this many steps (``steps`` is then ``None``).
    record_every : int
        Keep every k-th iterate in ``path`` (the last one is always kept).

    Returns
    -------
    GDResult
        Stops at convergence, at ``max_steps`` or on divergence (loss gap grown by 1e12 or
        non-finite).
    """
    X = _as_2d_finite(X, "X")
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X {X.shape}, got {y.shape}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    if max_steps < 1 or record_every < 1:
        raise ValueError("max_steps and record_every must be >= 1")
    H = X.T @ X / n
    eig = np.linalg.eigvalsh(H)
    kappa = _kappa(eig)
    if lr is None:
        if lr_factor <= 0:
            raise ValueError(f"lr_factor must be positive, got {lr_factor}")
        lr = lr_factor / eig[-1]
    elif lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    w = np.zeros(d) if w0 is None else np.asarray(w0, dtype=np.float64).copy()
    if w.shape != (d,):
        raise ValueError(f"w0 must have shape ({d},), got {w.shape}")
    Xty = X.T @ y / n
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    loss_star = float(least_squares_loss(X, y, w_star))
    gap0 = float(least_squares_loss(X, y, w)) - loss_star
    path, losses = [w.copy()], [loss_star + gap0]
    steps: int | None = 0 if gap0 <= 0 else None
    diverged = False
    t = 0
    while steps is None and t < max_steps:
        w = w - lr * (H @ w - Xty)
        t += 1
        loss = float(least_squares_loss(X, y, w))
        gap = loss - loss_star
        if not np.isfinite(loss) or gap > 1e12 * max(gap0, 1e-300):
            diverged = True
        if gap <= tol * gap0:
            steps = t
        if t % record_every == 0 or steps is not None or diverged:
            path.append(w.copy())
            losses.append(loss)
        if diverged:
            break
    return GDResult(
        path=np.array(path), losses=np.array(losses), steps=steps, converged=steps is not None,
        diverged=diverged, lr=float(lr), condition_number=kappa, w_star=w_star,
    )


def loss_grid(
    X: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray
) -> np.ndarray:
    """Loss on the grid ``w1`` (a,) x ``w2`` (b,) for a 2-feature problem -> (b, a), for ``contour``."""
    X = _as_2d_finite(X, "X")
    if X.shape[1] != 2:
        raise ValueError(f"loss_grid needs exactly 2 features, X has {X.shape[1]}")
    W1, W2 = np.meshgrid(np.asarray(w1, float), np.asarray(w2, float))
    return least_squares_loss(X, y, np.stack([W1, W2], axis=-1))


def gd_explorer(
    feature_scale: float = 10.0,
    lr_factor: float = 1.0,
    standardize: bool = False,
    seed: int = 0,
    tol: float = 1e-6,
    max_steps: int = 20_000,
) -> tuple[LeastSquaresProblem, GDResult]:
    """Pure function behind the chapter-1 widget: one problem, one GD run, no plotting.

    ``feature_scale`` is the std of feature 2 (feature 1 has std 1); ``lr_factor`` is the step size
    in units of ``1 / lambda_max``; ``standardize`` standardizes the features (and centres y)
    before descending. GD starts from the origin.
    """
    if feature_scale <= 0:
        raise ValueError(f"feature_scale must be positive, got {feature_scale}")
    problem = least_squares_problem(scales=(1.0, feature_scale), seed=seed)
    if standardize:
        problem = problem.standardized()
    result = gradient_descent(problem.X, problem.y, lr_factor=lr_factor, tol=tol, max_steps=max_steps)
    return problem, result
