"""Centred finite differences, to check an analytic gradient element by element (float64).

``numerical_gradient(f, x)`` estimates ``df/dx`` by ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for
every element ``i``; ``check_gradient`` compares it with an analytic gradient and reports the
worst element (index, analytic, numeric); ``gradcheck_batchnorm`` does this for ``dx``,
``dweight`` and ``dbias`` of a BatchNorm backward function, with the scalar loss
``L = sum(y * g)`` for a fixed random ``g`` (so that ``dL/dy = g``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from bncourse.numpy.functional import batchnorm_backward, batchnorm_forward

__all__ = ["GradientReport", "numerical_gradient", "check_gradient", "gradcheck_batchnorm"]

BackwardFn = Callable[..., Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]


@dataclass
class GradientReport:
    """Comparison of one analytic gradient with its finite-difference estimate."""

    name: str
    passed: bool
    index: Tuple[int, ...]     # the element with the largest |analytic - numeric| / tolerance
    analytic: float
    numeric: float
    max_abs_error: float
    rtol: float
    atol: float

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        return (f"d{self.name}: {verdict}; worst element {self.index}: analytic {self.analytic:.10g}, "
                f"numeric {self.numeric:.10g} (max |diff| {self.max_abs_error:.3g}; "
                f"tolerance {self.atol:g} + {self.rtol:g} * |numeric|)")


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Centred differences of the scalar ``f()`` with respect to every element of ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it. Needs float64: with float32
    the rounding error of ``f`` swamps the difference quotient.
    """
    if x.dtype != np.float64:
        raise ValueError(f"finite differences need float64 arrays, got {x.dtype}")
    grad = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2.0 * h)
    return grad


def check_gradient(
    analytic: np.ndarray, numeric: np.ndarray, *, name: str = "x",
    rtol: float = 1e-5, atol: float = 1e-7,
) -> GradientReport:
    """Compare element-wise with ``|analytic - numeric| <= atol + rtol * |numeric|``."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"d{name}: analytic shape {analytic.shape} != numeric shape {numeric.shape}")
    diff = np.abs(analytic - numeric)
    if diff.size == 0:
        return GradientReport(name, True, (), 0.0, 0.0, 0.0, rtol, atol)
    excess = diff / (atol + rtol * np.abs(numeric))
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), diff.shape))
    return GradientReport(
        name=name, passed=bool(np.all(excess <= 1.0)), index=index,
        analytic=float(analytic[index]), numeric=float(numeric[index]),
        max_abs_error=float(diff.max()), rtol=rtol, atol=atol,
    )


def gradcheck_batchnorm(
    x: np.ndarray,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    *,
    training: bool = True,
    running_mean: Optional[np.ndarray] = None,
    running_var: Optional[np.ndarray] = None,
    eps: float = 1e-5,
    backward: BackwardFn = batchnorm_backward,
    h: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> List[GradientReport]:
    """Check ``backward`` (compact or staged) against finite differences of ``batchnorm_forward``.

    Args:
        x: ``(N, C, *spatial)`` float64 input; weight, bias: ``(C,)`` float64 or None.
        training: batch statistics (True) or the given running statistics (False). The running
            buffers are never updated here (they are not passed in training).
        backward: a function ``(dy, cache) -> (dx, dweight, dbias)``.
        h, rtol, atol: step and tolerances of the comparison.

    Returns:
        One ``GradientReport`` per checked gradient (x, and weight/bias when given).

    Raises:
        AssertionError: naming the worst element of each failing gradient, unless
        ``raise_on_failure`` is False.
    """
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape)       # dL/dy for L = sum(y * g)
    buffers = (None, None) if training else (running_mean, running_var)

    def loss() -> float:
        y, _ = batchnorm_forward(x, weight, bias, *buffers, training=training, eps=eps)
        return float(np.sum(y * g))

    _, cache = batchnorm_forward(x, weight, bias, *buffers, training=training, eps=eps)
    dx, dweight, dbias = backward(g, cache)
    reports = [check_gradient(dx, numerical_gradient(loss, x, h), name="x", rtol=rtol, atol=atol)]
    for name, param, grad in (("weight", weight, dweight), ("bias", bias, dbias)):
        if param is not None:
            reports.append(check_gradient(grad, numerical_gradient(loss, param, h),
                                          name=name, rtol=rtol, atol=atol))
    failures = [str(r) for r in reports if not r.passed]
    if failures and raise_on_failure:
        raise AssertionError("gradient check failed:\n" + "\n".join(failures))
    return reports
