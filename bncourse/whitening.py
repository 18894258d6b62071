"""Chapter 1 machinery: whitening correlated features, and why BatchNorm does something simpler.

Standardization rescales each feature on its own; it cannot undo *correlation*. Whitening does: with the
training covariance ``Sigma = U diag(lam) U^T`` (eigendecomposition),

* **PCA whitening** ``z = diag(lam)^(-1/2) U^T (x - mu)`` rotates onto the principal axes and rescales them;
* **ZCA whitening** ``z = U diag(lam)^(-1/2) U^T (x - mu)`` rotates back afterwards, so ``z`` stays as close
  as possible to ``x`` (Bell & Sejnowski's "zero-phase" whitening).

Both give the whitened training data the identity covariance, hence a least-squares Hessian equal to the
identity: gradient descent with the step ``1 / lambda_max = 1`` lands on the minimum in one step.

* :func:`whitening_matrix`, :func:`whiten` -- the two recipes (``eps`` regularizes small eigenvalues);
* :func:`whitening_descent` -- raw, standardized and whitened versions of one correlated problem, each with
  its gradient-descent run (chapter 1's three-panel figure);
* :func:`batch_statistics_error` -- how far a mini-batch's mean and std fall from the data set's, per batch
  size: the error of the paper's second simplification, shrinking like ``1 / sqrt(B)``;
* :func:`eigh_gradient_is_finite` -- the gradient through an eigendecomposition is not defined where two
  eigenvalues coincide, and :func:`eigh_gradient_norm` -- it grows like ``1 / (lam_i - lam_j)`` as two
  eigenvalues approach each other (one reason the paper does not whiten inside the network).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bncourse.scaling import (
    GDResult,
    LeastSquaresProblem,
    _as_2d_finite,
    gradient_descent,
    least_squares_problem,
)
from bncourse.seeding import numpy_rng

__all__ = [
    "WHITENING_METHODS",
    "whitening_matrix",
    "whiten",
    "whitened_problem",
    "WhiteningDescent",
    "whitening_descent",
    "BatchStatisticsError",
    "batch_statistics_error",
    "eigh_gradient_is_finite",
    "eigh_gradient_norm",
]

#: The whitening recipes :func:`whitening_matrix` knows.
WHITENING_METHODS = ("pca", "zca")


def whitening_matrix(x: np.ndarray, method: str = "zca", eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The whitening map fitted on ``x`` (n, d): returns ``(W, mu)`` with ``W`` (d, d) and ``mu`` (d,).

    ``z = (x - mu) @ W.T`` has covariance ``I`` on the fitting data (population covariance, ``1/n``) when
    ``eps = 0``; ``eps > 0`` uses ``(lam + eps)^(-1/2)``, which keeps near-zero eigenvalues from blowing up
    noise. A singular covariance (n <= d, or a constant / duplicated feature) with ``eps = 0`` raises.
    """
    if method not in WHITENING_METHODS:
        raise ValueError(f"method must be one of {WHITENING_METHODS}, got {method!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    arr = _as_2d_finite(x, "whitening input")
    mu = arr.mean(axis=0)
    xc = arr - mu
    cov = xc.T @ xc / arr.shape[0]
    lam, U = np.linalg.eigh(cov)
    # eigenvalues below rounding level of the largest one count as 0
    if eps == 0 and lam[0] <= 1e-12 * max(lam[-1], 1e-300):
        raise ValueError(
            f"the covariance of the {arr.shape[0]} samples x {arr.shape[1]} features is singular "
            "(fewer samples than features, or a constant or duplicated feature); pass eps > 0"
        )
    scale = 1.0 / np.sqrt(np.maximum(lam, 0.0) + eps)
    W = scale[:, None] * U.T  # PCA: diag(lam)^(-1/2) U^T
    if method == "zca":
        W = U @ W
    return W, mu


def whiten(x: np.ndarray, method: str = "zca", eps: float = 0.0) -> np.ndarray:
    """Whiten ``x`` (n, d) with its own statistics -> (n, d); see :func:`whitening_matrix`."""
    W, mu = whitening_matrix(x, method, eps)
    return (np.asarray(x, dtype=np.float64) - mu) @ W.T


def whitened_problem(problem: LeastSquaresProblem, method: str = "zca") -> LeastSquaresProblem:
    """The same least-squares data with whitened features and a centred target (as ``standardized()``).

    With ``z = (x - mu) W^T`` the model ``x w`` is ``z W^{-T} w``, so the weights in whitened units are
    ``W^{-T} w_true``.
    """
    W, mu = whitening_matrix(problem.X, method)
    Z = (problem.X - mu) @ W.T
    yc = problem.y - problem.y.mean()
    w_star = np.linalg.lstsq(Z, yc, rcond=None)[0]
    return LeastSquaresProblem(Z, yc, np.linalg.solve(W.T, problem.w_true), w_star)


@dataclass(frozen=True)
class WhiteningDescent:
    """Problems (``raw``, ``standardized``, ``whitened``) and their gradient-descent runs (same keys)."""

    problems: dict[str, LeastSquaresProblem]
    runs: dict[str, GDResult]


def whitening_descent(
    correlation: float = 0.95,
    scales: Sequence[float] = (1.0, 10.0),
    w_true: Sequence[float] = (2.0, -0.3),
    seed: int = 0,
    method: str = "zca",
    tol: float = 1e-6,
    max_steps: int = 50_000,
) -> WhiteningDescent:
    """Gradient descent (step ``1 / lambda_max``) on raw, standardized and whitened correlated features.

    The features of :func:`bncourse.scaling.least_squares_problem` with the given ``correlation`` and
    ``scales``: standardizing removes the scale difference but leaves the correlation, so the Hessian keeps
    the condition number ``(1 + rho) / (1 - rho)`` of the sample correlation ``rho``; whitening makes it 1.
    """
    raw = least_squares_problem(scales=scales, correlation=correlation, w_true=w_true, seed=seed)
    problems = {"raw": raw, "standardized": raw.standardized(), "whitened": whitened_problem(raw, method)}
    runs = {name: gradient_descent(p.X, p.y, tol=tol, max_steps=max_steps) for name, p in problems.items()}
    return WhiteningDescent(problems, runs)


@dataclass(frozen=True)
class BatchStatisticsError:
    """Per batch size (``batch_sizes`` (k,)): root-mean-square error, over batches and features, of the
    mini-batch mean (``mean_error``) and standard deviation (``std_error``) against the data set's, both in
    units of the data set's per-feature std."""

    batch_sizes: np.ndarray
    mean_error: np.ndarray
    std_error: np.ndarray


def batch_statistics_error(
    x: np.ndarray, batch_sizes: Sequence[int], n_batches: int = 200, seed: int = 0
) -> BatchStatisticsError:
    """How well mini-batch statistics stand in for the data set's, for each batch size.

    Draws ``n_batches`` batches of each size from ``x`` (n, d) without replacement within a batch and
    compares each batch's per-feature mean and population std with those of all of ``x``. For independent
    draws the mean's error is about ``1 / sqrt(B)`` (in feature stds), so it halves when the batch grows
    fourfold.
    """
    arr = _as_2d_finite(x, "x")
    n = arr.shape[0]
    sizes = np.asarray(batch_sizes, dtype=int)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes < 2) or np.any(sizes > n):
        raise ValueError(f"batch sizes must lie in [2, {n}] (the number of samples), got {list(batch_sizes)}")
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    mu, sd = arr.mean(axis=0), arr.std(axis=0)
    if np.any(sd == 0):
        raise ValueError("a feature of x is constant; its batch statistics have no relative error")
    rng = numpy_rng(seed)
    mean_err, std_err = [], []
    for b in sizes:
        idx = np.stack([rng.choice(n, size=b, replace=False) for _ in range(n_batches)])  # (n_batches, b)
        batches = arr[idx]  # (n_batches, b, d)
        mean_err.append(np.sqrt(np.mean(((batches.mean(axis=1) - mu) / sd) ** 2)))
        std_err.append(np.sqrt(np.mean(((batches.std(axis=1) - sd) / sd) ** 2)))
    return BatchStatisticsError(sizes, np.array(mean_err), np.array(std_err))


def _eigh_whitening_gradient(eigenvalues: Sequence[float], dtype=None):
    """The gradient (d, d) with respect to the covariance ``diag(eigenvalues)`` of a fixed loss of the PCA
    whitening matrix ``diag(lam)^(-1/2) U^T``, computed by autograd through ``torch.linalg.eigh``."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64)).to(dtype)
    if lam.ndim != 1 or lam.numel() < 2 or not bool((lam > 0).all()):
        raise ValueError(f"need at least 2 positive eigenvalues, got {list(eigenvalues)}")
    cov = torch.diag(lam).requires_grad_(True)
    vals, vecs = torch.linalg.eigh(cov)
    W = vecs.T / vals.sqrt()[:, None]  # PCA whitening matrix (d, d)
    # fixed, asymmetric weights, so that the loss depends on the eigenvectors and not only on the eigenvalues
    weights = torch.arange(1, W.numel() + 1, dtype=dtype).reshape(W.shape)
    (W * weights).sum().backward()
    return cov.grad


def eigh_gradient_is_finite(eigenvalues: Sequence[float]) -> bool:
    """Whether the gradient of a loss of the PCA whitening matrix of ``diag(eigenvalues)`` is finite.

    The whitening matrix ``diag(lam)^(-1/2) U^T`` comes from ``torch.linalg.eigh``; the eigenvectors'
    gradient contains ``1 / (lam_i - lam_j)``, so where two eigenvalues are equal (the eigenvectors are then
    not unique) it is not defined and torch returns NaN. The covariance is exactly diagonal so that equal
    eigenvalues stay exactly equal (a rotated copy would separate them by rounding).
    """
    import torch

    return bool(torch.isfinite(_eigh_whitening_gradient(eigenvalues)).all())


def eigh_gradient_norm(gaps: Sequence[float], *, low: float = 1.0, high: float = 3.0,
                       dtype=None) -> np.ndarray:
    """Frobenius norm of the gradient through ``torch.linalg.eigh`` as two eigenvalues approach each other.

    For each ``gap`` in ``gaps`` (k,), the covariance is ``diag(low, low + gap, high)`` and the loss the one of
    :func:`eigh_gradient_is_finite`. The backward pass of ``eigh`` divides by ``lam_i - lam_j``, so the norm
    grows like ``1 / gap``: close eigenvalues, not only equal ones, make the gradient of a whitening layer
    explode. Returns the k norms as float64 (``nan`` where the gradient is not finite, e.g. ``gap = 0``, or
    where ``dtype`` (default float64) cannot tell ``low`` and ``low + gap`` apart).
    """
    import torch

    gap_arr = np.asarray(gaps, dtype=np.float64)
    if gap_arr.ndim != 1 or gap_arr.size == 0 or np.any(gap_arr < 0) or not np.all(np.isfinite(gap_arr)):
        raise ValueError(f"gaps must be a non-empty sequence of finite numbers >= 0, got {list(gaps)}")
    if not (0 < low and low + gap_arr.max() < high):
        raise ValueError(f"need 0 < low and low + max(gaps) < high, got low={low}, high={high}, "
                         f"max gap {gap_arr.max()}")
    norms = []
    for gap in gap_arr:
        grad = _eigh_whitening_gradient([low, low + gap, high], dtype)
        finite = bool(torch.isfinite(grad).all())
        norms.append(float(torch.linalg.matrix_norm(grad.double())) if finite else float("nan"))
    return np.array(norms)
