"""Quiz questions graded in pure Python: :class:`MultipleChoice` and :class:`Numeric`.

Every message is assembled from *parts* (``message_parts``) that the static HTML renderer also uses, so the
website's JavaScript shows exactly the text that :meth:`grade` returns. ``SLOT_VALUE`` and ``SLOT_REST`` mark
where the learner's own input is echoed (escaped).
"""
from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

from . import markup
from .feedback import Feedback
from .numeric_answer import cut, echo, parse_answer
from .question import Question
from .safe_text import safe_repr

SLOT_VALUE = "\x00value\x00"
SLOT_REST = "\x00rest\x00"
SLOT_FOUND = "\x00found\x00"
_MAX_SELECTION = 1000

def _fill(template: str, **slots: str) -> str:
    for name, value in slots.items():
        template = template.replace(f"\x00{name}\x00", markup.literal(value))
    return template


def _is_index(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


class MultipleChoice(Question):
    """A multiple-choice question with one right option (``answer=int``) or several (``answer=[ints]``).

    Args:
        id: unique id (letters, digits, ``-_.``).
        prompt: the question (markup: ``$math$``, ```code```, ``*emphasis*``, ``**strong**``).
        options: at least two distinct, non-empty option texts.
        answer: index of the right option, or a non-empty list of distinct indices (multi-answer: tick all).
        feedback: optional message per option index, shown when that (wrong) option is chosen.
        hint: shown on request and after a wrong answer.
        explanation: shown after a right answer.
    """

    def __init__(self, *, id: str, prompt: str, options: Sequence[str], answer: int | Sequence[int],
                 feedback: Mapping[int, str] | None = None, hint: str | None = None,
                 explanation: str | None = None) -> None:
        super().__init__(id=id, prompt=prompt, hint=hint, explanation=explanation)
        if isinstance(options, str) or not isinstance(options, Sequence):
            raise TypeError(f"{id}: options must be a list of strings, got {type(options).__name__}")
        options = list(options)
        if len(options) < 2:
            raise ValueError(f"{id}: a multiple-choice question needs at least 2 options, got {len(options)}")
        for i, opt in enumerate(options):
            markup.validate(opt, f"{id}: option {i}")
            if not opt.strip():
                raise ValueError(f"{id}: option {i} is empty")
        dupes = sorted({o for o in options if options.count(o) > 1})
        if dupes:
            raise ValueError(f"{id}: duplicate options {dupes}")
        self.options = options
        n = len(options)
        if _is_index(answer):
            self.multi = False
            correct = [int(answer)]
        elif isinstance(answer, (list, tuple, set, frozenset)):
            self.multi = True
            correct = list(answer)
            if not correct:
                raise ValueError(f"{id}: answer list is empty; a multi-answer question needs at least one right option")
            if not all(_is_index(a) for a in correct):
                raise TypeError(f"{id}: answer indices must be integers, got {correct!r}")
            if len(set(correct)) != len(correct):
                raise ValueError(f"{id}: answer list {correct!r} has duplicates")
        else:
            raise TypeError(f"{id}: answer must be an option index (int) or a list of indices, got {answer!r}")
        bad = [a for a in correct if not 0 <= a < n]
        if bad:
            raise ValueError(f"{id}: answer index {bad[0]} is out of range: there are {n} options (0..{n - 1})")
        self.answer = answer
        self.correct = frozenset(int(a) for a in correct)
        self.feedback: dict[int, str] = {}
        for k, msg in dict(feedback or {}).items():
            if not _is_index(k) or not 0 <= k < n:
                raise ValueError(f"{id}: feedback key {k!r} is not an option index (0..{n - 1})")
            self.feedback[int(k)] = markup.validate(msg, f"{id}: feedback[{k}]")
        self._register()

    # ----- message parts (shared with the static renderer) --------------------------------------------------
    def message_parts(self) -> dict[str, str]:
        """Every fragment a feedback message is assembled from, by key (see ``grade``)."""
        # The order of the parts is the order in which a message joins them (the static page relies on it).
        parts = {
            "none": ("No option ticked: tick every option that applies, then press Check." if self.multi
                     else "No option selected: pick one, then press Check."),
        }
        if self.multi:
            parts["right"] = self._right(
                f"Correct! All {len(self.correct)} right options, and none of the others.").message
            for i, opt in enumerate(self.options):
                if i not in self.correct:
                    parts[f"wrong-{i}"] = " ".join(
                        p for p in (f"“{opt}” should not be ticked.", self.feedback.get(i, "")) if p)
            parts["missing"] = (f"You have ticked {SLOT_FOUND} of the {len(self.correct)} right options; "
                                f"some are still missing.")
        else:
            for i, opt in enumerate(self.options):
                if i in self.correct:
                    parts[f"opt-{i}"] = self._right("Correct!").message
                else:
                    parts[f"opt-{i}"] = " ".join(p for p in (
                        f"Not quite: “{opt}” is not the right answer.", self.feedback.get(i, ""),
                        self._hint_tail()) if p)
        parts["hint"] = self._hint_tail()
        return parts

    def _grade(self, selection: int | Iterable[int] | None) -> Feedback:
        """Grade a selection: an option index (single answer) or a collection of indices (multi-answer)."""
        parts = self.message_parts()
        n = len(self.options)
        if selection is None:
            chosen: list[int] = []
        elif _is_index(selection):
            chosen = [int(selection)]
        elif isinstance(selection, (str, bytes)) or not isinstance(selection, Iterable):
            return Feedback(False, f"An answer is an option number (0..{n - 1})"
                                   f"{' or a list of them' if self.multi else ''}, not "
                                   f"{markup.literal(safe_repr(selection, 80))}.")
        else:
            chosen = list(itertools.islice(selection, _MAX_SELECTION + 1))  # an endless iterable stops here
            if len(chosen) > _MAX_SELECTION:
                return Feedback(False, f"That selection has more than {_MAX_SELECTION} entries; there are {n} options.")
            if not all(_is_index(c) for c in chosen):
                return Feedback(False, f"Option numbers must be integers, got {markup.literal(safe_repr(chosen, 80))}.")
            chosen = sorted({int(c) for c in chosen})
        bad = [c for c in chosen if not 0 <= c < n]
        if bad:
            return Feedback(False, f"There is no option {markup.literal(cut(str(bad[0])))}: the options are "
                                   f"numbered 0..{n - 1}.")
        if not chosen:
            return Feedback(False, parts["none"])
        if not self.multi:
            if len(chosen) > 1:
                return Feedback(False, f"This question has exactly one right answer; you chose {len(chosen)} options.")
            return Feedback(chosen[0] in self.correct, parts[f"opt-{chosen[0]}"])
        wrong = [c for c in chosen if c not in self.correct]
        found = len(self.correct.intersection(chosen))
        if not wrong and found == len(self.correct):
            return Feedback(True, parts["right"])
        msg = [parts[f"wrong-{c}"] for c in wrong]
        if found < len(self.correct):
            msg.append(_fill(parts["missing"], found=str(found)))
        if parts["hint"]:
            msg.append(parts["hint"])
        return Feedback(False, " ".join(msg))


class Numeric(Question):
    """A question whose answer is a number, accepted within an absolute tolerance.

    Args:
        id, prompt, hint, explanation: as for :class:`MultipleChoice`.
        answer: the right value (finite).
        tol: accepted absolute error (``>= 0``); default ``1e-6 * max(1, |answer|)``.
        units: the unit the answer is given in (shown next to the input box; a learner may type it or not).

    The learner types a decimal number (``0.25``, ``-3``, ``1e-3``) or a fraction (``2/5``), optionally with
    the unit; the exact grammar, shared with the website's JavaScript, is in ``numeric_answer``.
    """

    def __init__(self, *, id: str, prompt: str, answer: float, tol: float | None = None, units: str | None = None,
                 hint: str | None = None, explanation: str | None = None) -> None:
        super().__init__(id=id, prompt=prompt, hint=hint, explanation=explanation)
        if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
            raise TypeError(f"{id}: answer must be a real number, got {answer!r}")
        if not math.isfinite(float(answer)):
            raise ValueError(f"{id}: answer must be finite, got {answer!r}")
        self.answer = float(answer)
        if tol is None:
            tol = 1e-6 * max(1.0, abs(self.answer))
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(float(tol)):
            raise ValueError(f"{id}: tol must be a finite number, got {tol!r}")
        if tol < 0:
            raise ValueError(f"{id}: tol must be >= 0, got {tol!r}")
        self.tol = float(tol)
        if units is not None:
            markup.validate(units, f"{id}: units")
            if not units.strip():
                raise ValueError(f"{id}: units is empty (use None for a pure number)")
            units = units.strip()
        self.units = units
        self._register()

    @property
    def slack(self) -> float:
        """The tolerance actually applied, ``tol`` plus a few ulps (so that typing the answer's own digits passes)."""
        return self.tol + 1e-12 * max(1.0, abs(self.answer))

    def message_parts(self) -> dict[str, str]:
        """Every fragment a feedback message is assembled from, by key (see ``grade``)."""
        unit = f" {self.units}" if self.units else ""
        within = f"within ±{self.tol:g}{unit} of the answer"
        return {
            "empty": "Type a number first, then press Check.",
            "nan": f"“{SLOT_VALUE}” is not a number: type digits with a dot for decimals, "
                   f"like 0.25, -3, 1e-3 or 2/5.",
            "unit": f"Give the answer in {self.units}: “{SLOT_REST}” is not that unit (you may also leave the unit out)."
                    if self.units else "",
            "high": f"{SLOT_VALUE} is too high: it is not {within}.",
            "low": f"{SLOT_VALUE} is too low: it is not {within}.",
            "right": self._right(f"Correct: {SLOT_VALUE} is {within} ({self.answer:g}{unit}).").message,
            "hint": self._hint_tail(),
        }

    def parse(self, text: str) -> tuple[str, float | str]:
        """Parse typed input by the grammar of ``numeric_answer`` (the website's JavaScript reads it alike):
        ``("ok", value)``, or ``(key, detail)`` with key ``empty``/``nan``/``unit``."""
        return parse_answer(text, self.units)

    def _grade(self, value: float | str | None) -> Feedback:
        """Grade a typed string (``"0.4"``, ``"2/5"``, ``"0.4 s"``) or a number."""
        parts = self.message_parts()
        if value is None:
            return Feedback(False, parts["empty"])
        if isinstance(value, str):
            shown = echo(value)
            key, parsed = self.parse(value)
            if key != "ok":
                msg = _fill(parts[key], value=shown, rest=str(parsed))
                return Feedback(False, " ".join(p for p in (msg, parts["hint"] if key != "empty" else "") if p))
            x = float(parsed)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            x = float(value)
            shown = f"{x:g}"
            if not math.isfinite(x):
                return Feedback(False, " ".join(p for p in (_fill(parts["nan"], value=shown), parts["hint"]) if p))
        else:
            shown = safe_repr(value, 80)
            return Feedback(False, " ".join(p for p in (_fill(parts["nan"], value=shown), parts["hint"]) if p))
        if abs(x - self.answer) <= self.slack:
            return Feedback(True, _fill(parts["right"], value=shown))
        key = "high" if x > self.answer else "low"
        return Feedback(False, " ".join(p for p in (_fill(parts[key], value=shown), parts["hint"]) if p))
