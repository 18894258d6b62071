"""Chapter 5's exercise "the gradient-check trap": choose a loss that really tests a BN backward pass.

With ``loss = sum(y)`` the upstream gradient ``dL/dy`` is 1 everywhere. BN's training-mode backward projects
``dL/dy`` off the directions ``1`` and ``x_hat`` of every channel, so the true ``dL/dx`` is identically zero, the
finite differences are zero too, and a backward that drops the ``dL/dσ²`` term, or returns zeros, "passes". The
learner writes a gradient check, with a loss of their choosing, that accepts the correct backward and rejects the
wrong ones. :func:`gradient_check_exercise` builds the :class:`~bncourse.exercises.CodeExercise`; its feedback
names the mistake from which wrong backward the learner's check accepted.

The backwards take ``(dy, x, gamma)`` with ``x`` and ``dy`` of shape ``(N, C)``, ``gamma`` of shape ``(C,)``,
and return ``dx`` of shape ``(N, C)`` (training mode, ``eps = 1e-5``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bncourse.exercises import Case, CodeExercise

__all__ = ["EPS", "bn_forward", "bn_backward", "backward_without_dmean", "backward_without_dvar",
           "backward_zero", "backward_unbiased", "gradient_check_reference", "gradient_check_exercise",
           "SOLUTION", "MESSAGES"]

EPS = 1e-5

Backward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def bn_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Training-mode BN of ``x`` (N, C) with the batch statistics (biased variance); returns ``y`` (N, C)."""
    x = np.asarray(x, dtype=float)
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return gamma * x_hat + beta


def _backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, *, dmean: bool = True, dvar: bool = True,
              ddof: int = 0) -> np.ndarray:
    """The staged backward (Ioffe and Szegedy, section 3), with one of its terms optionally dropped."""
    m = x.shape[0]
    x_mu = x - x.mean(axis=0)
    var = (x_mu ** 2).sum(axis=0) / (m - ddof)
    inv_std = 1.0 / np.sqrt(var + EPS)
    dxhat = dy * gamma
    dvar_ = (dxhat * x_mu).sum(axis=0) * -0.5 * inv_std ** 3 if dvar else 0.0
    dmean_ = -(dxhat * inv_std).sum(axis=0) if dmean else 0.0
    return dxhat * inv_std + dvar_ * 2 * x_mu / (m - ddof) + dmean_ / m


def bn_backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """The correct training-mode ``dL/dx`` (N, C)."""
    return _backward(dy, x, gamma)


def backward_without_dmean(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Wrong: drops the path through the batch mean (caught even by ``loss = sum(y)``)."""
    return _backward(dy, x, gamma, dmean=False)


def backward_without_dvar(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Wrong: drops the path through the batch variance (invisible when ``dL/dy`` is constant per channel)."""
    return _backward(dy, x, gamma, dvar=False)


def backward_zero(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Wrong: returns zeros (invisible when ``dL/dy`` lies in ``span{1, x_hat}`` of every channel)."""
    return np.zeros_like(np.asarray(x, dtype=float))


def backward_unbiased(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Wrong: uses the unbiased variance (m - 1) where the forward pass uses the biased one (an error of
    about 1/(2m) relative: caught by a tight tolerance only)."""
    return _backward(dy, x, gamma, ddof=1)


SOLUTION = '''
import numpy as np

def gradient_check(backward, x, gamma, beta, h=1e-6):
    # dL/dy must NOT be constant per channel (loss = sum(y)) nor lie in span{1, x_hat}
    # (loss = sum(y**2)): BN's backward projects those directions away, so dx would be ~0.
    g = np.random.default_rng(0).normal(size=x.shape)
    loss = lambda x_: float(np.sum(g * bn_forward(x_, gamma, beta)))   # dL/dy = g
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):                                    # centred differences
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (loss(xp) - loss(xm)) / (2 * h)
    return bool(np.allclose(backward(g, x, gamma), numeric, rtol=1e-5, atol=1e-7))
'''


def gradient_check_reference(backward: Backward, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                             h: float = 1e-6) -> bool:
    """The reference check: ``loss = sum(g * y)`` with a fixed random ``g``, centred differences with step
    ``h``, ``np.allclose(..., rtol=1e-5, atol=1e-7)``. True when ``backward`` gives BN's ``dL/dx``."""
    g = np.random.default_rng(0).normal(size=x.shape)

    def loss(x_: np.ndarray) -> float:
        return float(np.sum(g * bn_forward(x_, gamma, beta)))

    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (loss(xp) - loss(xm)) / (2 * h)
    return bool(np.allclose(backward(g, x, gamma), numeric, rtol=1e-5, atol=1e-7))


#: Case label -> the message when the learner's check gives the wrong verdict on that case.
MESSAGES: dict[str, str] = {
    "a correct backward": (
        "Your check rejects a **correct** backward. Pass `backward` the same `dy` as the gradient of the loss "
        "you differentiate numerically (for `loss = sum(g * y)` that is `g`), use centred differences with a "
        "small step (`h = 1e-6` in float64) and compare with a tolerance such as "
        "`np.allclose(analytic, numeric, rtol=1e-5, atol=1e-7)`."),
    "a backward without the dL/dμ term": (
        "Your check accepts a backward that drops the `dL/dμ` term, which even `loss = sum(y)` catches. Does it "
        "compare anything? It must return `False` whenever `backward`'s `dx` differs from the finite "
        "differences."),
    "a backward without the dL/dσ² term": (
        "Your check accepts a backward that drops the `dL/dσ²` term: the gradient-check trap. With "
        "`loss = sum(y)` (or `mean(y)`, or any loss whose `dL/dy` is the same for every example of a channel), "
        "`dL/dy` points along the direction `1`, which BN's backward projects away: the true `dx` is "
        "identically zero, the finite differences are zero, and the `dL/dσ²` term, which multiplies "
        "`sum(dL/dy * (x - μ))`, is zero too. Use a loss whose `dL/dy` varies from example to example, e.g. "
        "`loss = sum(g * y)` with a fixed random `g`."),
    "a backward that returns zeros": (
        "Your check accepts a backward that returns `dx = 0`. Your loss's `dL/dy` lies (almost) in the span "
        "of `1` and `x_hat` in every channel, e.g. `loss = sum(y**2)`, whose `dL/dy = 2y = 2γ x_hat + 2β`: BN's "
        "backward projects both directions away, and only the tiny `ε` leak is left, which your tolerance "
        "absorbs. Use a loss whose `dL/dy` is not a function of `y` of that form, e.g. `sum(g * y)` with a fixed "
        "random `g`."),
    "a backward with the unbiased variance": (
        "Your check accepts a backward that uses the unbiased variance (divides by `m - 1`), an error of about "
        "`1/(2m)` relative: your tolerance is too loose. A centred difference in float64 is accurate to about "
        "`1e-8`, so `rtol=1e-5, atol=1e-7` is safe."),
}


def _diagnose(expected: bool, got: object, case: Case) -> str | None:
    if not isinstance(got, (bool, np.bool_)):
        return "Return `True` or `False` (e.g. `bool(np.allclose(...))`)."
    return MESSAGES.get(case.label)


def gradient_check_exercise() -> CodeExercise:
    """The exercise ``ch5-gradient-check-trap``: write ``gradient_check(backward, x, gamma, beta)``.

    Cases (in order; the check stops at the first wrong verdict): the correct backward (True), one without
    the ``dL/dμ`` term, one without the ``dL/dσ²`` term, one returning zeros, one with the unbiased variance
    (all False). ``x`` of the zero case has a large spread (std about 100), so the ``ε`` leak of
    ``sum(y**2)`` is below common tolerances.
    """
    rng = np.random.default_rng(11)
    x1, gamma1, beta1 = rng.normal(2.0, 1.5, (8, 3)), rng.uniform(0.5, 2.0, 3), rng.normal(size=3)
    x2, gamma2, beta2 = rng.normal(-1.0, 100.0, (6, 2)), rng.uniform(0.5, 2.0, 2), rng.normal(size=2)
    cases = [Case(args=(bn_backward, x1, gamma1, beta1), label="a correct backward"),
             Case(args=(backward_without_dmean, x1, gamma1, beta1), label="a backward without the dL/dμ term"),
             Case(args=(backward_without_dvar, x1, gamma1, beta1), label="a backward without the dL/dσ² term"),
             Case(args=(backward_zero, x2, gamma2, beta2), label="a backward that returns zeros"),
             Case(args=(backward_unbiased, x1, gamma1, beta1), label="a backward with the unbiased variance")]
    return CodeExercise(
        id="ch5-gradient-check-trap",
        prompt="Write `gradient_check(backward, x, gamma, beta)` that returns `True` when `backward(dy, x, gamma)` "
               "returns BN's training-mode `dL/dx` and `False` otherwise. Choose a scalar loss of "
               "`y = bn_forward(x, gamma, beta)`, pass its gradient `dL/dy` to `backward`, and compare the result "
               "with centred finite differences of the loss with respect to every element of `x` (shape (N, C)). "
               "The checker feeds your function a correct backward and four wrong ones.",
        function_name="gradient_check", reference=gradient_check_reference, cases=cases,
        hints=["Which `dL/dy` does `loss = sum(y)` give, and what does BN's backward do to a constant `dL/dy`?",
               "BN's backward removes the components of `dL/dy` along `1` and along `x_hat`, per channel: choose "
               "a loss whose `dL/dy` has other components, e.g. `sum(g * y)` with a fixed random `g`.",
               "Numerical gradient: for each index, `(loss(x + h e_i) - loss(x - h e_i)) / (2h)` with `h = 1e-6`, "
               "on copies of `x`."],
        solution=SOLUTION, diagnose=_diagnose, timeout=10.0)
