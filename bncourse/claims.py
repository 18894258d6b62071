"""Claims: what a chapter's text says its experiments show, checked as statistics over seeds.

A chapter states each experimental claim once, through one of the functions below, with the per-seed values
of its own run. The claim carries the statement in words, a criterion that the spread over seeds justifies,
this run's numbers and whether it held. Kinds of claim:

* :func:`greater` / :func:`less` — an effect on the mean: the one-sided 95 % t-interval for the mean of
  ``a - b`` over the seeds (paired when ``a`` and ``b`` share seeds; ``b`` may be a number) clears ``by``,
  the smallest effect the text claims, not the smallest one observed;
* :func:`ratio_greater` — the same on ``log(a / b)``, for "``a`` is at least ``factor`` times ``b``";
* :func:`close_to` — the two-sided 95 % t-interval for the mean lies within ``target ± tol``;
* :func:`each` / :func:`each_true` — a per-run statement ("diverges on every seed", "trains"), with a
  threshold far from the observed values;
* :func:`bound` — a numerical error against a bound derived from the arithmetic (unit roundoff, length and
  conditioning of a reduction), with the derivation in words;
* :func:`observe` — an effect the text reports but does **not** claim, because it is not clear of the noise
  at an affordable number of seeds.

Exact identities (float64 equalities, bit-for-bit invariance) stay plain ``assert`` statements.

Two modes:

* strict, when the environment variable ``BNCOURSE_STRICT_CLAIMS`` is set to anything but ``0`` (``make
  test`` and CI set it): a claim that misses raises :class:`ClaimMissed` with all its numbers;
* otherwise (a learner's Jupyter, Colab or Binder session) a miss never stops Run All: the claim-check box
  says that it missed in this run and what that means.

Every claim is also recorded in the chapter's ledger; :func:`ledger` shows the table at the chapter's end and
glues it (myst-nb's ``glue`` protocol, :func:`glue`) for the course-wide list of claims. Numbers that the
text quotes from the run go through :func:`glue` as well, so the page, a learner's run and the claim checks
always agree.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["STRICT_ENV", "ClaimMissed", "Claim", "strict", "greater", "less", "ratio_greater", "close_to",
           "each", "each_true", "bound", "observe", "Ledger", "ledger", "reset", "recorded", "glue", "span", "mean_sd",
           "GLUE_PREFIX", "LEDGER_KEY"]

STRICT_ENV = "BNCOURSE_STRICT_CLAIMS"
#: MIME prefix of glued data that is stored but not shown (myst-nb's ``glue(..., display=False)``).
GLUE_PREFIX = "application/papermill.record/"
#: The glue key of a chapter's ledger table (pasted into the course-wide list of claims).
LEDGER_KEY = "claims_ledger"
CONFIDENCE = 0.95

MISS_NOTE = (
    "A miss in your own run does not mean that your setup is broken. The experiment is random (initialization, "
    "batch order) and floating point differs between CPUs, so each run draws new values; the spread above shows "
    "how far they move from seed to seed. The course's build checks this claim on several seed offsets and two "
    "simulated CPUs. If it misses on your machine repeatedly, with other seeds too (set BNCOURSE_SEED_OFFSET), "
    "the effect is weaker than the text says: please tell us."
)


class ClaimMissed(AssertionError):
    """A claim that did not hold in strict mode; the message holds the statement, criterion and numbers."""


@dataclass
class Claim:
    """One checked claim of a chapter.

    Attributes:
        key: a short id, unique within the chapter (``"rnn-per-step-beats-ln"``).
        statement: what the text says, in words.
        criterion: the test, in words, with its numbers (``δ``, the confidence, the threshold).
        values: label -> per-run values (one entry per seed), as shown in the box.
        result: the statistic the criterion is about, in words (``"mean 0.161, lower end 0.098"``).
        held: True, False, or None for an observation that is not asserted.
        asserted: False for :func:`observe`.
    """

    key: str
    statement: str
    criterion: str
    values: dict[str, list[float]]
    result: str
    held: bool | None
    asserted: bool = True
    seeds: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if not self.asserted:
            return "reported, not claimed"
        return "held" if self.held else "missed"

    def text(self) -> str:
        """The claim as plain text, with every number (the message of :class:`ClaimMissed`)."""
        lines = [f"claim {self.key!r}: {self.statement}", f"  criterion: {self.criterion}",
                 f"  this run: {self.result} -> {self.verdict}"]
        for label, vals in self.values.items():
            lines.append(f"  {label}: " + ", ".join(_fmt(v) for v in vals))
        if self.seeds is not None:
            lines.append("  seeds: " + ", ".join(str(s) for s in self.seeds))
        return "\n".join(lines)

    __str__ = text

    def __repr__(self) -> str:
        return self.text()

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "statement": self.statement, "criterion": self.criterion, "values": self.values,
                "result": self.result, "held": self.held, "asserted": self.asserted, "seeds": self.seeds}

    def _repr_html_(self) -> str:
        colour = {"held": "#2e7d32", "missed": "#c62828"}.get(self.verdict, "#6d6d6d")
        esc = html.escape
        rows = "".join(f"<tr><th scope='row' style='text-align:left;padding-right:.8em'>{esc(label)}</th>"
                       + "".join(f"<td style='padding:0 .5em'>{_fmt(v)}</td>" for v in vals) + "</tr>"
                       for label, vals in self.values.items())
        head = ""
        if self.seeds is not None and self.values and all(len(v) == len(self.seeds) for v in self.values.values()):
            head = ("<tr><th scope='col' style='text-align:left'>seed</th>"
                    + "".join(f"<th scope='col' style='padding:0 .5em'>{s}</th>" for s in self.seeds) + "</tr>")
        miss = f"<p style='margin:.4em 0 0'>{esc(MISS_NOTE)}</p>" if self.held is False else ""
        data = esc(json.dumps({"key": self.key, "held": self.held, "asserted": self.asserted}), quote=True)
        return (f"<div class='bncourse-claim' data-claim=\"{data}\" role='note' "
                f"style='border-left:4px solid {colour};padding:.4em .8em;margin:.6em 0;font-size:.9em'>"
                f"<p style='margin:0'><strong>Claim check</strong> — <strong>{esc(self.verdict)}</strong></p>"
                f"<p style='margin:.2em 0'><em>{esc(self.statement)}</em></p>"
                f"<p style='margin:.2em 0'>Criterion: {esc(self.criterion)}</p>"
                f"<p style='margin:.2em 0'>This run: {esc(self.result)}</p>"
                f"<table style='font-size:.9em;margin:.2em 0'>{head}{rows}</table>{miss}</div>")


_LEDGER: dict[str, Claim] = {}


def strict() -> bool:
    """True when ``BNCOURSE_STRICT_CLAIMS`` is set to anything but ``""`` or ``"0"``: a miss raises."""
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0")


def reset() -> None:
    """Forget the claims recorded so far (a new chapter in the same kernel)."""
    _LEDGER.clear()


def recorded() -> list[Claim]:
    """The claims recorded in this kernel, in the order they were first checked."""
    return list(_LEDGER.values())


def _fmt(value: float) -> str:
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _values(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: no values")
    return arr


def _t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def _interval(diff: np.ndarray, *, two_sided: bool = False) -> tuple[float, float, float, float]:
    """(mean, sd, lower, upper) of the t-interval at CONFIDENCE (one-sided ends unless ``two_sided``)."""
    n = diff.size
    if n < 2:
        raise ValueError(f"a statistical claim needs at least 2 runs, got {n}")
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    q = _t_quantile(1 - (1 - CONFIDENCE) / (2 if two_sided else 1), n - 1)
    half = q * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def _record(claim: Claim, show: bool) -> Claim:
    _LEDGER.pop(claim.key, None)
    _LEDGER[claim.key] = claim
    if show:
        _display(claim)
    if claim.asserted and not claim.held and strict():
        raise ClaimMissed(claim.text())
    return claim


def _display(obj: Any) -> None:
    try:
        from IPython.display import display
    except ImportError:  # plain Python without IPython
        print(obj)
        return
    display(obj)


def _labels(labels: Sequence[str] | None, n: int, default: Sequence[str]) -> list[str]:
    labels = list(labels) if labels is not None else list(default)
    if len(labels) != n:
        raise ValueError(f"expected {n} labels, got {labels!r}")
    return labels


def _paired(a: Any, b: Any, labels: Sequence[str] | None) -> tuple[np.ndarray, dict[str, list[float]], str]:
    a_arr = _values(a, "a")
    if np.ndim(b) == 0:
        (la,) = _labels(labels, 1, ["value"])
        return a_arr - float(b), {la: a_arr.tolist()}, f"{la} − {_fmt(float(b))}"
    b_arr = _values(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths, got {a_arr.size} and {b_arr.size}")
    la, lb = _labels(labels, 2, ["a", "b"])
    return a_arr - b_arr, {la: a_arr.tolist(), lb: b_arr.tolist()}, f"{la} − {lb}"


def greater(key: str, statement: str, a: Any, b: Any = 0.0, *, by: float = 0.0,
            labels: Sequence[str] | None = None, seeds: Iterable[int] | None = None, show: bool = True) -> Claim:
    """Claim that ``a`` exceeds ``b`` by more than ``by`` on average over the runs.

    Held when the lower end of the one-sided 95 % t-interval for the mean of ``a - b`` is above ``by``.
    ``a``, ``b``: per-run values of shape ``(n,)`` with ``n >= 2``, paired by run (``b`` may be a number).
    """
    diff, values, what = _paired(a, b, labels)
    mean, sd, lower, _ = _interval(diff)
    criterion = (f"the lower end of a one-sided {CONFIDENCE:.0%} t-interval for the mean of {what} over the "
                 f"{diff.size} runs is above {_fmt(by)}")
    result = f"mean {_fmt(mean)}, sd {_fmt(sd)}, lower end {_fmt(lower)}"
    return _record(Claim(key, statement, criterion, values, result, bool(lower > by), seeds=_seeds(seeds),
                         extra={"mean": mean, "sd": sd, "lower": lower}), show)


def less(key: str, statement: str, a: Any, b: Any = 0.0, *, by: float = 0.0,
         labels: Sequence[str] | None = None, seeds: Iterable[int] | None = None, show: bool = True) -> Claim:
    """Claim that ``a`` is below ``b`` by more than ``by`` on average: the upper end of the one-sided 95 %
    t-interval for the mean of ``a - b`` is below ``-by``. Shapes as in :func:`greater`."""
    diff, values, what = _paired(a, b, labels)
    mean, sd, _, upper = _interval(diff)
    criterion = (f"the upper end of a one-sided {CONFIDENCE:.0%} t-interval for the mean of {what} over the "
                 f"{diff.size} runs is below {_fmt(-by)}")
    result = f"mean {_fmt(mean)}, sd {_fmt(sd)}, upper end {_fmt(upper)}"
    return _record(Claim(key, statement, criterion, values, result, bool(upper < -by), seeds=_seeds(seeds),
                         extra={"mean": mean, "sd": sd, "upper": upper}), show)


def ratio_greater(key: str, statement: str, a: Any, b: Any = 1.0, *, factor: float,
                  labels: Sequence[str] | None = None, seeds: Iterable[int] | None = None,
                  show: bool = True) -> Claim:
    """Claim that ``a`` is more than ``factor`` times ``b``: the lower end of the one-sided 95 % t-interval
    for the mean of ``log(a / b)`` is above ``log(factor)`` (a geometric-mean ratio). Values must be positive;
    shapes as in :func:`greater`."""
    a_arr = _values(a, "a")
    paired = np.ndim(b) != 0
    b_arr = _values(b, "b") if paired else np.full(a_arr.shape, float(b))
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths, got {a_arr.size} and {b_arr.size}")
    if not (np.all(a_arr > 0) and np.all(b_arr > 0) and np.all(np.isfinite(a_arr)) and np.all(np.isfinite(b_arr))):
        raise ValueError(f"ratio_greater needs positive, finite values, got {a_arr.tolist()} and {b_arr.tolist()}")
    if paired:
        la, lb = _labels(labels, 2, ["a", "b"])
        values, what = {la: a_arr.tolist(), lb: b_arr.tolist()}, f"{la} / {lb}"
    else:
        (la,) = _labels(labels, 1, ["value"])
        values, what = {la: a_arr.tolist()}, f"{la} / {_fmt(float(b))}"
    mean, sd, lower, _ = _interval(np.log(a_arr) - np.log(b_arr))
    criterion = (f"the lower end of a one-sided {CONFIDENCE:.0%} t-interval for the geometric mean of {what} "
                 f"over the {a_arr.size} runs is above {_fmt(factor)}")
    result = f"geometric mean ratio {_fmt(math.exp(mean))}, lower end {_fmt(math.exp(lower))}"
    return _record(Claim(key, statement, criterion, values, result, bool(lower > math.log(factor)),
                         seeds=_seeds(seeds), extra={"ratio": math.exp(mean), "lower": math.exp(lower)}), show)


def close_to(key: str, statement: str, values: Any, *, target: float, tol: float, label: str = "value",
             seeds: Iterable[int] | None = None, show: bool = True) -> Claim:
    """Claim that the mean of ``values`` is ``target`` within ``tol``: the two-sided 95 % t-interval for the
    mean lies inside ``[target - tol, target + tol]``."""
    arr = _values(values, label)
    mean, sd, lower, upper = _interval(arr, two_sided=True)
    criterion = (f"the two-sided {CONFIDENCE:.0%} t-interval for the mean of {label} over the {arr.size} runs "
                 f"lies within {_fmt(target)} ± {_fmt(tol)}")
    result = f"mean {_fmt(mean)}, sd {_fmt(sd)}, interval [{_fmt(lower)}, {_fmt(upper)}]"
    held = bool(target - tol <= lower and upper <= target + tol)
    return _record(Claim(key, statement, criterion, {label: arr.tolist()}, result, held, seeds=_seeds(seeds),
                         extra={"mean": mean, "lower": lower, "upper": upper}), show)


def each(key: str, statement: str, values: Any, *, above: float | None = None, below: float | None = None,
         label: str = "value", seeds: Iterable[int] | None = None, show: bool = True) -> Claim:
    """A per-run claim: every value is above ``above`` and/or below ``below`` (thresholds far from the
    observed values, e.g. "well above chance"). NaN counts as a miss."""
    if above is None and below is None:
        raise ValueError("each() needs `above`, `below` or both")
    arr = _values(values, label)
    ok = np.ones(arr.shape, dtype=bool)
    parts = []
    if above is not None:
        ok &= arr > above
        parts.append(f"above {_fmt(above)}")
    if below is not None:
        ok &= arr < below
        parts.append(f"below {_fmt(below)}")
    criterion = f"{label} is {' and '.join(parts)} in every one of the {arr.size} runs"
    result = f"{int(ok.sum())} of {arr.size} runs, range {_fmt(np.nanmin(arr))} to {_fmt(np.nanmax(arr))}" \
        if np.isfinite(arr).any() else f"{int(ok.sum())} of {arr.size} runs"
    return _record(Claim(key, statement, criterion, {label: arr.tolist()}, result, bool(ok.all()),
                         seeds=_seeds(seeds)), show)


def each_true(key: str, statement: str, flags: Any, *, label: str = "holds", seeds: Iterable[int] | None = None,
              show: bool = True) -> Claim:
    """A per-run yes/no claim ("diverges on every seed"): every flag is true."""
    arr = np.asarray(flags, dtype=bool).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{label}: no values")
    criterion = f"{label} in every one of the {arr.size} runs"
    result = f"{int(arr.sum())} of {arr.size} runs"
    return _record(Claim(key, statement, criterion, {label: arr.astype(float).tolist()}, result, bool(arr.all()),
                         seeds=_seeds(seeds)), show)


def bound(key: str, statement: str, value: Any, limit: float, *, why: str, label: str = "error",
          show: bool = True) -> Claim:
    """A numerical claim: every ``value`` is at most ``limit``, a bound derived from the arithmetic; ``why``
    states the derivation (e.g. "u·(log2 n + 2)·κ with u = 2⁻²⁴, n = 4096, κ = 3")."""
    arr = _values(value, label)
    criterion = f"{label} ≤ {_fmt(limit)}, where {why}"
    result = f"largest {label} {_fmt(np.max(arr))} ({_fmt(np.max(arr) / limit)} of the bound)"
    held = bool(np.all(arr <= limit))
    return _record(Claim(key, statement, criterion, {label: arr.tolist()}, result, held), show)


def observe(key: str, statement: str, a: Any, b: Any = 0.0, *, labels: Sequence[str] | None = None,
            seeds: Iterable[int] | None = None, show: bool = True) -> Claim:
    """An effect the text reports but does not claim: shows the two-sided 95 % t-interval for the mean of
    ``a - b`` and whether it excludes 0; never raises."""
    diff, values, what = _paired(a, b, labels)
    mean, sd, lower, upper = _interval(diff, two_sided=True)
    clear = lower > 0 or upper < 0
    criterion = (f"not claimed: the two-sided {CONFIDENCE:.0%} t-interval for the mean of {what} is shown, "
                 f"and the text does not rely on its sign")
    result = (f"mean {_fmt(mean)}, sd {_fmt(sd)}, interval [{_fmt(lower)}, {_fmt(upper)}] "
              f"({'excludes' if clear else 'includes'} 0)")
    return _record(Claim(key, statement, criterion, values, result, None, asserted=False, seeds=_seeds(seeds),
                         extra={"mean": mean, "lower": lower, "upper": upper}), show)


def _seeds(seeds: Iterable[int] | None) -> list[int] | None:
    if seeds is None:
        return None
    from bncourse.seeding import shifted

    return [shifted(s) for s in seeds]


class Ledger:
    """The table of a chapter's claims: statement, criterion, this run's values, held."""

    def __init__(self, claims: Sequence[Claim]):
        self.claims = list(claims)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(c.statement)}</td><td>{esc(c.criterion)}</td><td>{esc(c.result)}</td>"
            f"<td>{esc(c.verdict)}</td></tr>" for c in self.claims)
        return ("<table class='bncourse-ledger'><thead><tr><th scope='col'>claim</th><th scope='col'>criterion</th>"
                "<th scope='col'>this run</th><th scope='col'>held</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

    def __repr__(self) -> str:
        return "\n\n".join(c.text() for c in self.claims)

    def __len__(self) -> int:
        return len(self.claims)


def ledger(*, show: bool = True) -> Ledger | None:
    """The chapter's ledger: every claim recorded in this kernel, glued under :data:`LEDGER_KEY` for the
    course-wide list of claims. With ``show`` the table is displayed and nothing is returned (so a cell ending
    in ``claims.ledger()`` shows it once); with ``show=False`` the :class:`Ledger` is returned."""
    table = Ledger(recorded())
    glue(LEDGER_KEY, table, display=False)
    if show:
        _display(table)
        return None
    return table


class _Plain(str):
    """A string whose plain-text form has no quotes (``{glue:text}`` pastes it as is)."""

    def __repr__(self) -> str:
        return str(self)


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` in the cell's output under ``name`` for myst-nb's ``{glue:text}`` roles.

    The same protocol as ``myst_nb.glue``, without needing myst-nb (Colab has none). NumPy scalars are stored
    as Python numbers, so ``{glue:text}`key:.2f``` formats them; strings paste without quotes.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        value = _Plain(value)
    try:
        from IPython.core.formatters import format_display_data
        from IPython.display import display as ipy_display
    except ImportError:
        return
    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata = dict(metadata or {})
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def span(values: Any, digits: int = 2) -> str:
    """``"min–max"`` of per-run values, e.g. ``"0.32–0.39"`` (one number when they agree at ``digits``)."""
    arr = _values(values, "values")
    lo, hi = f"{np.nanmin(arr):.{digits}f}", f"{np.nanmax(arr):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def mean_sd(values: Any, digits: int = 3) -> str:
    """``"mean ± sd"`` of per-run values (sample standard deviation)."""
    arr = _values(values, "values")
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{arr.mean():.{digits}f} ± {sd:.{digits}f}"
