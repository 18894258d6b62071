"""Chapter 2 machinery: dataset shift -- synthetic generators, detection, corrections, image shifts.

Three kinds of shift between a *source* (training) distribution and a *target* (deployment) one
(Quinonero-Candela et al. 2009; Moreno-Torres et al. 2012):

* covariate shift -- ``p(x)`` changes, ``p(y | x)`` is fixed: :func:`covariate_shift_data`
  (the "trained on young people, used on old people" example: a 1-D *age* feature);
* prior-probability (label) shift -- ``p(y)`` changes, ``p(x | y)`` is fixed: :func:`label_shift_data`;
* concept shift -- ``p(y | x)`` changes, ``p(x)`` is fixed: :func:`concept_shift_data`.

Detection from unlabeled target inputs: :func:`domain_classifier_auc` (AUC of a classifier telling
source from target; about 0.5 when ``p(x)`` did not change) and :func:`mmd_permutation_test`
(kernel two-sample test; Rabanser et al. 2019).

Corrections: :func:`importance_weights` (covariate shift, weights ``p_t(x) / p_s(x)`` from the domain
classifier; Shimodaira 2000), :func:`adjust_posteriors` (label shift with known target priors) and
:func:`em_prior_adjustment` (label shift with unknown target priors; Saerens et al. 2002). Concept
shift has no correction without target labels.

For the BatchNorm bridge: :func:`shift_images` (contrast / brightness / gamma / inversion of images
in ``[0, 1]``) and the three shifts of the chapter, :data:`CHAPTER2_SHIFTS`. The AdaBN experiment that
trains a BN network and re-estimates its statistics under these shifts is torch code and lives in
:mod:`bncourse.bn_statistics`.

Every random draw (the generators, the domain classifier's folds, the permutations) is seeded with ``seed``
shifted by ``BNCOURSE_SEED_OFFSET`` (:mod:`bncourse.seeding`), so the chapter's claims can be checked on
seeds nobody chose them on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bncourse.seeding import numpy_rng, shifted

__all__ = [
    "ShiftData",
    "covariate_shift_data",
    "age_outcome",
    "label_shift_data",
    "concept_shift_data",
    "LABEL_SHIFT_MEANS",
    "LABEL_SHIFT_STD",
    "gaussian_class_posterior",
    "gaussian_density_ratio",
    "domain_classifier_auc",
    "importance_weights",
    "effective_sample_size",
    "MMDResult",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "adjust_posteriors",
    "EMResult",
    "em_prior_adjustment",
    "shift_images",
    "CHAPTER2_SHIFTS",
    "GENDER_SEPARATION",
    "GENDER_MARKER_STD",
    "marker_trend",
    "gender_shift_data",
    "bayes_gender",
    "GenderShiftResult",
    "gender_shift_experiment",
]


@dataclass
class ShiftData:
    """Labeled samples from a source and a target distribution.

    ``x_source`` (n_source, d), ``y_source`` (n_source,), ``x_target`` (n_target, d),
    ``y_target`` (n_target,). ``kind`` is ``"covariate"``, ``"label"`` or ``"concept"``. Labels are
    float for regression (covariate example) and int64 class indices for classification.
    """

    x_source: np.ndarray
    y_source: np.ndarray
    x_target: np.ndarray
    y_target: np.ndarray
    kind: str

    def __repr__(self) -> str:
        return (f"ShiftData(kind={self.kind!r}, source={self.x_source.shape}, "
                f"target={self.x_target.shape})")


def _check_n(**sizes: int) -> None:
    for name, n in sizes.items():
        if int(n) != n or n < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {n}")


def _check_priors(priors: Sequence[float], name: str, k: int | None = None) -> np.ndarray:
    p = np.asarray(priors, dtype=np.float64)
    if p.ndim != 1 or p.size < 2:
        raise ValueError(f"{name} must be a 1-D sequence of >= 2 class probabilities, got shape {p.shape}")
    if k is not None and p.size != k:
        raise ValueError(f"{name} has {p.size} entries but there are {k} classes")
    if np.any(~np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"{name} must be positive, got {p.tolist()}")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got sum {p.sum():.6g}")
    return p / p.sum()


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------

def age_outcome(age: np.ndarray) -> np.ndarray:
    """The fixed ``E[y | age]`` of :func:`covariate_shift_data`: a convex curve, (n,) -> (n,).

    ``((age - 20) / 20) ** 2`` -- flat for young people, steep for old ones, so a straight line
    fitted on young people badly underestimates the outcome of old people.
    """
    return ((np.asarray(age, dtype=np.float64) - 20.0) / 20.0) ** 2


def covariate_shift_data(
    n_source: int = 1000,
    n_target: int = 1000,
    seed: int = 0,
    source_age: tuple[float, float] = (35.0, 10.0),
    target_age: tuple[float, float] = (55.0, 7.0),
    noise: float = 0.1,
) -> ShiftData:
    """Covariate shift: ages ``x ~ N(mean, std)`` differ, ``y | x`` does not.

    Source ages ``N(*source_age)`` (young), target ages ``N(*target_age)`` (older);
    ``y = age_outcome(x) + noise * eps`` in both. ``target_age == source_age`` gives *no* shift.
    Shapes: ``x_*`` (n, 1), ``y_*`` (n,) float64.
    """
    _check_n(n_source=n_source, n_target=n_target)
    for name, (_, std) in (("source_age", source_age), ("target_age", target_age)):
        if not std > 0:
            raise ValueError(f"{name} std must be positive, got {std}")
    rng = numpy_rng(seed)
    xs = rng.normal(source_age[0], source_age[1], n_source)
    xt = rng.normal(target_age[0], target_age[1], n_target)
    ys = age_outcome(xs) + noise * rng.standard_normal(n_source)
    yt = age_outcome(xt) + noise * rng.standard_normal(n_target)
    return ShiftData(xs[:, None], ys, xt[:, None], yt, "covariate")


def gaussian_density_ratio(
    x: np.ndarray, source: tuple[float, float], target: tuple[float, float]
) -> np.ndarray:
    """Exact ``p_target(x) / p_source(x)`` for 1-D Gaussians given as ``(mean, std)``; (n,) or (n, 1) -> (n,)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    (ms, ss), (mt, st) = source, target
    log_r = (np.log(ss / st) - 0.5 * ((x - mt) / st) ** 2 + 0.5 * ((x - ms) / ss) ** 2)
    return np.exp(log_r)


#: Class means (3, 2) and shared isotropic std of the label-shift generator.
LABEL_SHIFT_MEANS = np.array([[0.0, 1.0], [-0.87, -0.5], [0.87, -0.5]])
LABEL_SHIFT_STD = 0.8


def label_shift_data(
    n_source: int = 3000,
    n_target: int = 3000,
    seed: int = 0,
    source_priors: Sequence[float] = (1 / 3, 1 / 3, 1 / 3),
    target_priors: Sequence[float] = (0.8, 0.1, 0.1),
) -> ShiftData:
    """Prior-probability shift: class frequencies change, each class's inputs ``p(x | y)`` do not.

    Three overlapping 2-D Gaussian classes ``N(LABEL_SHIFT_MEANS[k], LABEL_SHIFT_STD^2 I)``; labels
    drawn with ``source_priors`` / ``target_priors``. Shapes: ``x_*`` (n, 2), ``y_*`` (n,) int64.
    """
    _check_n(n_source=n_source, n_target=n_target)
    k = len(LABEL_SHIFT_MEANS)
    ps = _check_priors(source_priors, "source_priors", k)
    pt = _check_priors(target_priors, "target_priors", k)
    rng = numpy_rng(seed)

    def draw(n: int, priors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(k, size=n, p=priors)
        x = LABEL_SHIFT_MEANS[y] + LABEL_SHIFT_STD * rng.standard_normal((n, 2))
        return x, y.astype(np.int64)

    xs, ys = draw(n_source, ps)
    xt, yt = draw(n_target, pt)
    return ShiftData(xs, ys, xt, yt, "label")


def gaussian_class_posterior(x: np.ndarray, priors: Sequence[float]) -> np.ndarray:
    """Exact Bayes posterior ``p(y | x)`` (n, 3) of :func:`label_shift_data`'s classes under ``priors``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2), got {x.shape}")
    p = _check_priors(priors, "priors", len(LABEL_SHIFT_MEANS))
    d2 = ((x[:, None, :] - LABEL_SHIFT_MEANS[None]) ** 2).sum(-1)
    logits = -0.5 * d2 / LABEL_SHIFT_STD**2 + np.log(p)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def concept_shift_data(
    n_source: int = 1000,
    n_target: int = 1000,
    seed: int = 0,
    angle_deg: float = 60.0,
) -> ShiftData:
    """Concept shift: the same inputs ``x ~ N(0, I_2)``, a different labeling rule.

    Source: ``y = [x . (1, 0) > 0]``; target: ``y = [x . (cos a, sin a) > 0]`` -- the decision
    boundary turned by ``angle_deg``. A perfect source classifier gets ``1 - a / 180`` on the
    target; ``angle_deg = 0`` gives no shift. Shapes: ``x_*`` (n, 2), ``y_*`` (n,) int64.
    """
    _check_n(n_source=n_source, n_target=n_target)
    rng = numpy_rng(seed)
    xs = rng.standard_normal((n_source, 2))
    xt = rng.standard_normal((n_target, 2))
    a = np.deg2rad(angle_deg)
    ys = (xs[:, 0] > 0).astype(np.int64)
    yt = (xt @ np.array([np.cos(a), np.sin(a)]) > 0).astype(np.int64)
    return ShiftData(xs, ys, xt, yt, "concept")


# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------

def _as_samples(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n, d) with n >= 2, got {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _source_target(x_source: np.ndarray, x_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs = _as_samples(x_source, "x_source")
    xt = _as_samples(x_target, "x_target")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(
            f"x_source has {xs.shape[1]} features but x_target has {xt.shape[1]}; both must have the same"
        )
    return xs, xt


def _domain_classifier(degree: int, C: float):
    """Logistic regression on polynomial features: the log density ratio of two Gaussians is quadratic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    return make_pipeline(
        StandardScaler(), PolynomialFeatures(degree, include_bias=False), StandardScaler(),
        LogisticRegression(C=C, max_iter=2000),
    )


def domain_classifier_auc(
    x_source: np.ndarray,
    x_target: np.ndarray,
    seed: int = 0,
    n_folds: int = 5,
    degree: int = 2,
    C: float = 1.0,
) -> float:
    """Cross-validated ROC AUC of a classifier that tells target inputs (label 1) from source ones (0).

    ``x_source`` (n_s, d), ``x_target`` (n_t, d). Every input is scored by a model that did not see
    it (``n_folds``-fold, stratified, shuffled with ``seed`` plus ``BNCOURSE_SEED_OFFSET``). AUC about 0.5:
    the classifier cannot tell the domains apart (no detectable change of ``p(x)``); near 1: strong covariate
    shift.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    xs, xt = _source_target(x_source, x_target)
    if n_folds < 2 or min(len(xs), len(xt)) < n_folds:
        raise ValueError(f"n_folds must be >= 2 and at most the size of each sample, got {n_folds}")
    x = np.vstack([xs, xt])
    d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=shifted(seed) % 2**32)
    scores = cross_val_predict(_domain_classifier(degree, C), x, d, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(d, scores))


def importance_weights(
    x_source: np.ndarray,
    x_target: np.ndarray,
    degree: int = 2,
    C: float = 1.0,
    clip: float | None = None,
) -> np.ndarray:
    """Importance weights ``w(x) = p_target(x) / p_source(x)`` of the source inputs, (n_s,).

    From a domain classifier ``q(x) = P(target | x)`` (logistic regression on degree-``degree``
    polynomial features, fitted on all inputs): Bayes' rule gives
    ``p_t(x) / p_s(x) = q(x) / (1 - q(x)) * n_s / n_t``. The weights are then normalized to mean 1
    over the source sample; ``clip`` caps them (at ``clip`` times the mean, renormalized after
    clipping) to bound their variance.
    """
    xs, xt = _source_target(x_source, x_target)
    if clip is not None and not clip > 1:
        raise ValueError(f"clip must be > 1 (a multiple of the mean weight) or None, got {clip}")
    x = np.vstack([xs, xt])
    d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    clf = _domain_classifier(degree, C).fit(x, d)
    # log-odds instead of q / (1 - q): no overflow or division by 0 for confident predictions
    log_odds = clf.decision_function(xs)
    log_w = log_odds + np.log(len(xs) / len(xt))
    w = np.exp(log_w - log_w.max())
    w = w / w.mean()
    if clip is not None:
        w = np.minimum(w, clip)
        w = w / w.mean()
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of importance weights (n,) -> float in [1, n]."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() == 0:
        raise ValueError("weights must be a non-empty array of finite, non-negative numbers with a positive sum")
    return float(w.sum() ** 2 / (w * w).sum())


@dataclass(frozen=True)
class MMDResult:
    """``mmd2`` (unbiased estimate of the squared MMD), permutation ``p_value``, kernel ``bandwidth``."""

    mmd2: float
    p_value: float
    bandwidth: float


def _gaussian_kernel(z: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    return np.exp(-d2 / (2 * bandwidth**2))


def _median_heuristic(z: np.ndarray) -> float:
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    med = np.sqrt(np.median(d2[np.triu_indices(len(z), 1)]))
    return float(med) if med > 0 else 1.0


def _mmd2_from_kernel(K: np.ndarray, n: int) -> float:
    """Unbiased MMD^2 with the first ``n`` rows/cols of ``K`` being sample X, the rest sample Y."""
    m = K.shape[0] - n
    kxx, kyy, kxy = K[:n, :n], K[n:, n:], K[:n, n:]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased estimate of ``MMD^2`` between samples ``x`` (n, d) and ``y`` (m, d), Gaussian kernel.

    ``k(a, b) = exp(-||a - b||^2 / (2 h^2))``; ``h`` defaults to the median pairwise distance of the
    pooled sample. The estimate can be slightly negative when the distributions are equal.
    """
    xs, ys = _source_target(x, y)
    z = np.vstack([xs, ys])
    h = _median_heuristic(z) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    return _mmd2_from_kernel(_gaussian_kernel(z, h), len(xs))


def mmd_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    n_permutations: int = 200,
    bandwidth: float | None = None,
    seed: int = 0,
) -> MMDResult:
    """Two-sample test of ``p_x = p_y`` with the unbiased MMD^2 statistic and a permutation null.

    Pools the samples, recomputes the statistic for ``n_permutations`` random relabelings and
    returns ``p = (1 + #{perm >= observed}) / (1 + n_permutations)`` (valid at any sample size).
    ``x`` (n, d), ``y`` (m, d); cost O((n + m)^2) memory, O(n_permutations (n + m)^2) time.
    """
    xs, ys = _source_target(x, y)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    z = np.vstack([xs, ys])
    h = _median_heuristic(z) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    K = _gaussian_kernel(z, h)
    n = len(xs)
    observed = _mmd2_from_kernel(K, n)
    rng = numpy_rng(seed)
    exceed = 0
    for _ in range(n_permutations):
        idx = rng.permutation(len(z))
        exceed += _mmd2_from_kernel(K[np.ix_(idx, idx)], n) >= observed
    return MMDResult(mmd2=observed, p_value=(1 + exceed) / (1 + n_permutations), bandwidth=h)


# ----------------------------------------------------------------------------------------------
# Label-shift corrections
# ----------------------------------------------------------------------------------------------

def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (n, n_classes) with n_classes >= 2, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.abs(p.sum(1) - 1).max() > 1e-6:
        raise ValueError("probs must hold one probability vector per row (non-negative, rows sum to 1)")
    return p


def adjust_posteriors(
    probs: np.ndarray, source_priors: Sequence[float], target_priors: Sequence[float]
) -> np.ndarray:
    """Re-weight source posteriors to target class priors (label shift, ``p(x | y)`` fixed).

    ``p_t(y | x) ∝ p_s(y | x) * pi_t(y) / pi_s(y)``, renormalized per row. ``probs`` (n, k) ->
    (n, k). Exact when ``probs`` are the true source posteriors.
    """
    p = _check_probs(probs)
    k = p.shape[1]
    ratio = _check_priors(target_priors, "target_priors", k) / _check_priors(source_priors, "source_priors", k)
    q = p * ratio
    return q / q.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class EMResult:
    """``priors`` (k,) estimated target priors, ``posteriors`` (n, k) adjusted, ``n_iter``, ``converged``."""

    priors: np.ndarray
    posteriors: np.ndarray
    n_iter: int
    converged: bool


def em_prior_adjustment(
    probs: np.ndarray,
    source_priors: Sequence[float],
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> EMResult:
    """Estimate unknown target priors from unlabeled target data by EM (Saerens et al. 2002).

    ``probs`` (n, k): the source model's posteriors on the *target* inputs. Starting from
    ``pi = source_priors`` it alternates E: ``p_t(y | x_i) ∝ probs_i * pi / pi_s`` and
    M: ``pi = mean_i p_t(y | x_i)`` until ``max |Delta pi| < tol``. It maximizes the likelihood of
    the target inputs under the mixture ``sum_y pi(y) p(x | y)``.
    """
    p = _check_probs(probs)
    ps = _check_priors(source_priors, "source_priors", p.shape[1])
    if max_iter < 1 or not tol > 0:
        raise ValueError("max_iter must be >= 1 and tol > 0")
    pi = ps.copy()
    post = p
    for it in range(1, max_iter + 1):
        q = p * (pi / ps)
        post = q / q.sum(axis=1, keepdims=True)
        new_pi = post.mean(axis=0)
        if np.abs(new_pi - pi).max() < tol:
            return EMResult(new_pi, post, it, True)
        pi = new_pi
    return EMResult(pi, post, max_iter, False)


# ----------------------------------------------------------------------------------------------
# Images: input shifts
# ----------------------------------------------------------------------------------------------

def shift_images(
    x: np.ndarray,
    contrast: float = 1.0,
    brightness: float = 0.0,
    gamma: float = 1.0,
    invert: bool = False,
    clip: bool = True,
) -> np.ndarray:
    """Shift the input distribution of images with pixels in ``[0, 1]``: ``x' = a x^gamma + b``.

    ``a = contrast``, ``b = brightness``, ``gamma`` a gamma correction (``> 1`` darkens mid-tones;
    applied first); then ``x' -> 1 - x'`` if ``invert``; then clipped to ``[0, 1]`` if ``clip``. Any shape, returns float32 of the same shape. The labels (what the
    image shows) are unchanged, so this is a covariate shift.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"x must be a float array of pixels in [0, 1], got dtype {arr.dtype}")
    if arr.size and (np.nanmin(arr) < -1e-6 or np.nanmax(arr) > 1 + 1e-6 or not np.all(np.isfinite(arr))):
        raise ValueError("x must hold finite pixel values in [0, 1] (scale uint8 images by 1/255 first)")
    if not np.isfinite(contrast) or not np.isfinite(brightness):
        raise ValueError("contrast and brightness must be finite numbers")
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma}")
    base = arr.astype(np.float32)
    if gamma != 1.0:
        base = np.power(np.clip(base, 0.0, 1.0), np.float32(gamma))
    out = np.float32(contrast) * base + np.float32(brightness)
    if invert:
        out = 1.0 - out
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32, copy=False)


#: The three image shifts of chapter 2 -- affine (AdaBN repairs it), non-linear (partly), inversion (not).
CHAPTER2_SHIFTS = {
    "contrast 0.5, brightness +0.3": dict(contrast=0.5, brightness=0.3),
    "gamma 3 (darker mid-tones)": dict(gamma=3.0),
    "inverted": dict(invert=True),
}


# ----------------------------------------------------------------------------------------------
# Covariate shift in a classifier: genders told apart by a marker that drifts with age
# ----------------------------------------------------------------------------------------------

#: Distance between the two genders' mean marker values (:func:`gender_shift_data`).
GENDER_SEPARATION = 2.0
#: Standard deviation of the marker within a gender at a given age.
GENDER_MARKER_STD = 0.5


def marker_trend(age: np.ndarray) -> np.ndarray:
    """The fixed mid-point ``((age - 20) / 15) ** 2`` of the two genders' marker means, (n,) -> (n,).

    Gender 1's marker has mean ``trend + GENDER_SEPARATION / 2``, gender 0's ``trend - GENDER_SEPARATION / 2``:
    the feature that separates the genders shifts with age, slowly for the young and fast for the old.
    """
    return ((np.asarray(age, dtype=np.float64) - 20.0) / 15.0) ** 2


def gender_shift_data(
    n_source: int = 1000,
    n_target: int = 1000,
    seed: int = 0,
    source_age: tuple[float, float] = (35.0, 10.0),
    target_age: tuple[float, float] = (55.0, 7.0),
) -> ShiftData:
    """Covariate shift in classification: trained on the young, used on the old.

    Each person has a gender ``y`` (0 or 1, equally likely, independent of age), an age (source
    ``N(*source_age)``, target ``N(*target_age)``) and a marker
    ``m = marker_trend(age) + (y - 1/2) * GENDER_SEPARATION + GENDER_MARKER_STD * eps``. Since ``p(age, m | y)``
    differs between the domains only through ``p(age)``, ``p(y | age, m)`` is the same in both: a covariate
    shift. Shapes: ``x_*`` (n, 2) = (age, marker), ``y_*`` (n,) int64.
    """
    _check_n(n_source=n_source, n_target=n_target)
    for name, (_, std) in (("source_age", source_age), ("target_age", target_age)):
        if not std > 0:
            raise ValueError(f"{name} std must be positive, got {std}")
    rng = numpy_rng(seed)

    def draw(n: int, age_dist: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        age = rng.normal(age_dist[0], age_dist[1], n)
        y = rng.integers(0, 2, n)
        marker = marker_trend(age) + (y - 0.5) * GENDER_SEPARATION + GENDER_MARKER_STD * rng.standard_normal(n)
        return np.column_stack([age, marker]), y.astype(np.int64)

    xs, ys = draw(n_source, source_age)
    xt, yt = draw(n_target, target_age)
    return ShiftData(xs, ys, xt, yt, "covariate")


def bayes_gender(x: np.ndarray) -> np.ndarray:
    """The Bayes classifier of :func:`gender_shift_data`: gender 1 iff the marker exceeds the trend. (n, 2) -> (n,)."""
    x = _as_samples(x, "x")
    return (x[:, 1] > marker_trend(x[:, 0])).astype(np.int64)


@dataclass(frozen=True)
class GenderShiftResult:
    """Accuracies of :func:`gender_shift_experiment`: the linear classifier on the source and on the target,
    the same classifier fitted with importance weights (target), one quadratic in age (target), and the Bayes
    classifier (target)."""

    source: float
    target: float
    target_weighted: float
    target_quadratic: float
    target_bayes: float


def gender_shift_experiment(seed: int = 0, n_source: int = 1000, n_target: int = 1000) -> GenderShiftResult:
    """Train logistic regressions on the young (:func:`gender_shift_data`) and score them on the old.

    The linear classifier's boundary ``marker = a + b * age`` fits the trend where the young are and falls
    behind it at old ages; importance weights (:func:`importance_weights` on the inputs) move the fit towards
    the ages of the target; a boundary quadratic in age is well specified and barely notices the shift.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    d = gender_shift_data(n_source, n_target, seed=seed)

    def fit(degree: int, weights: np.ndarray | None = None):
        model = make_pipeline(StandardScaler(), PolynomialFeatures(degree, include_bias=False),
                              LogisticRegression(C=100.0, max_iter=5000))
        return model.fit(d.x_source, d.y_source, logisticregression__sample_weight=weights)

    linear = fit(1)
    weighted = fit(1, importance_weights(d.x_source, d.x_target))
    quadratic = fit(2)
    return GenderShiftResult(
        source=float(linear.score(d.x_source, d.y_source)),
        target=float(linear.score(d.x_target, d.y_target)),
        target_weighted=float(weighted.score(d.x_target, d.y_target)),
        target_quadratic=float(quadratic.score(d.x_target, d.y_target)),
        target_bayes=float(np.mean(bayes_gender(d.x_target) == d.y_target)),
    )
