"""Code exercises: the learner writes a function, :meth:`CodeExercise.check` runs it against a reference.

Checking runs the learner's function on every :class:`Case` (on deep copies of the arguments, in a thread
with a time limit; see ``bncourse.exercises.sandbox``) and stops at the first case that fails, saying which
case, what is wrong (exception with its line, timeout, type, shape, dtype, NaN, values with the largest error and
where, inputs modified in place), the exercise's ``diagnose`` message if any, and the first hint.
"""
from __future__ import annotations

import ast
import copy
import inspect
import keyword
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import markup
from .compare import _is_tensor, compare
from .feedback import Feedback
from .question import Question
from .sandbox import call_with_timeout

@dataclass(frozen=True)
class Case:
    """One test input of a code exercise: ``fn(*args, **kwargs)``; ``label`` names it in feedback."""

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.args, tuple):
            raise TypeError(f"Case.args must be a tuple, got {type(self.args).__name__} "
                            f"(write args=(x,) for a single argument)")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise TypeError("Case.kwargs must be a dict with string keys")
        if not isinstance(self.label, str):
            raise TypeError(f"Case.label must be a str, got {type(self.label).__name__}")


def _same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` (an argument before/after a call) hold identical values."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if _is_tensor(a):
        return _is_tensor(b) and a.shape == b.shape and bool((a == b).logical_or((a != a) & (b != b)).all())
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:
        return True  # an object we cannot compare: do not accuse the learner


class CodeExercise(Question):
    """A function to write, checked against ``reference`` on ``cases``.

    Args:
        id: unique id.  prompt: the task (markup).
        function_name: the name the learner defines; the live **Check** button looks it up in the notebook's
            namespace at click time, so a re-defined function is picked up.
        reference: the reference implementation (run on every case at construction, to validate the cases).
        cases: non-empty list of :class:`Case`.
        hints: hints revealed one at a time on request; the first is also appended to failure messages.
        solution: the solution's source code (must define ``function_name``); shown on request.
        rtol, atol: tolerances for floating-point results (``numpy.isclose`` semantics).
        diagnose: optional ``diagnose(expected, got, case) -> str | None`` for targeted messages.
        timeout: seconds a single case may run before the learner's function is abandoned.
        check_dtype: whether array results must have the reference's dtype exactly.
    """

    def __init__(self, *, id: str, prompt: str, function_name: str, reference: Callable,
                 cases: Sequence[Case], hints: Sequence[str] = (), solution: str | None = None,
                 rtol: float = 1e-6, atol: float = 1e-8, diagnose: Callable[[Any, Any, Case], str | None] | None = None,
                 timeout: float = 5.0, check_dtype: bool = True) -> None:
        super().__init__(id=id, prompt=prompt)
        if not isinstance(function_name, str) or not function_name.isidentifier() or keyword.iskeyword(function_name):
            raise ValueError(f"{id}: function_name must be a Python identifier, got {function_name!r}")
        self.function_name = function_name
        if not callable(reference):
            raise TypeError(f"{id}: reference must be callable, got {type(reference).__name__}")
        self.reference = reference
        if isinstance(hints, str):
            hints = [hints]
        self.hints = [markup.validate(h, f"{id}: hints[{i}]") for i, h in enumerate(hints)]
        for name, tol in (("rtol", rtol), ("atol", atol), ("timeout", timeout)):
            if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
                raise ValueError(f"{id}: {name} must be a finite number >= 0, got {tol!r}")
        if timeout <= 0:
            raise ValueError(f"{id}: timeout must be > 0 seconds, got {timeout!r}")
        self.rtol, self.atol, self.timeout = float(rtol), float(atol), float(timeout)
        self.check_dtype = bool(check_dtype)
        if diagnose is not None and not callable(diagnose):
            raise TypeError(f"{id}: diagnose must be callable or None")
        self.diagnose = diagnose
        self.solution = self._validate_solution(solution)
        if isinstance(cases, (str, bytes)) or not isinstance(cases, Sequence) or not cases:
            raise ValueError(f"{id}: cases must be a non-empty list of Case")
        labelled = []
        for i, case in enumerate(cases):
            if not isinstance(case, Case):
                raise TypeError(f"{id}: cases[{i}] is a {type(case).__name__}, not a Case")
            labelled.append(case if case.label else Case(case.args, case.kwargs, f"case {i + 1}"))
        labels = [c.label for c in labelled]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"{id}: duplicate case labels {dupes}")
        self.cases = labelled
        self.expected = []
        for case in self.cases:
            args, kwargs = copy.deepcopy((case.args, dict(case.kwargs)))
            try:
                self.expected.append(reference(*args, **kwargs))
            except Exception as exc:
                raise ValueError(f"{id}: the reference raised {type(exc).__name__} on case {case.label!r}: {exc}") from exc
        self._register()

    def _validate_solution(self, solution: str | None) -> str | None:
        if solution is None:
            return None
        if not isinstance(solution, str):
            raise TypeError(f"{self.id}: solution must be source code (str), got {type(solution).__name__}")
        try:
            tree = ast.parse(solution)
        except SyntaxError as exc:
            raise ValueError(f"{self.id}: solution has a syntax error: {exc}") from None
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        names |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        if self.function_name not in names:
            raise ValueError(f"{self.id}: solution does not define {self.function_name!r}")
        return solution.strip("\n")

    def solution_function(self, namespace: dict[str, Any] | None = None) -> Callable:
        """Execute the solution source (in a copy of ``namespace``) and return the function it defines."""
        if self.solution is None:
            raise ValueError(f"{self.id}: this exercise has no solution source")
        ns: dict[str, Any] = dict(namespace or {})
        exec(compile(self.solution, f"<solution of {self.id}>", "exec"), ns)
        return ns[self.function_name]

    def _arg_name(self, position: int | str) -> str:
        if isinstance(position, str):
            return position
        try:
            params = list(inspect.signature(self.reference).parameters)
            return params[position]
        except (TypeError, ValueError, IndexError):
            return f"argument {position + 1}"

    def check(self, fn: Any) -> Feedback:
        """Run ``fn`` on every case; pass if all results match the reference. Never raises."""
        name = markup.code(self.function_name)
        if fn is None:
            return Feedback(False, f"There is no function {name} to check: define it (run its cell) first.")
        if not callable(fn):
            return Feedback(False, f"{name} is {markup.literal(type(fn).__name__)} object, not a function.")
        for case, expected in zip(self.cases, self.expected):
            msg = self._check_case(fn, case, expected)
            if msg is not None:
                where = f"Case “{markup.literal(case.label)}”: "
                return Feedback(False, where + msg, case=case.label)
        labels = ", ".join(markup.literal(c.label) for c in self.cases)
        return Feedback(True, f"All {len(self.cases)} cases pass ({labels}). Well done!")

    def _check_case(self, fn: Callable, case: Case, expected: Any) -> str | None:
        args, kwargs = copy.deepcopy((case.args, dict(case.kwargs)))
        before = copy.deepcopy((args, kwargs))
        out = call_with_timeout(fn, args, kwargs, self.timeout)
        name = markup.code(self.function_name)
        if out.timed_out:
            msg = f"{name} did not return within {self.timeout:g} s: an infinite loop, or a very slow one?"
            if not out.stopped:
                msg += (" It is still running in the background (it could not be interrupted); if the notebook "
                        "becomes slow, restart the kernel.")
            return self._with_hint(msg)
        if out.error is not None:
            err = f"{type(out.error).__name__}: {out.error}" if str(out.error) else type(out.error).__name__
            line = f" (at {markup.code(out.error_line)})" if out.error_line else ""
            return self._with_hint(f"{name} raised {markup.literal(err)}{line}.")
        for pos, (b, a) in enumerate(zip(before[0], args)):
            if not _same(b, a):
                return self._with_hint(
                    f"{name} modified its input {markup.code(self._arg_name(pos))} in place. Leave the inputs "
                    f"unchanged: compute on a copy (x = x.copy()) or use out-of-place operations (x = x - m, "
                    f"not x -= m).")
        for key in before[1]:
            if not _same(before[1][key], kwargs[key]):
                return self._with_hint(f"{name} modified its input {markup.code(key)} in place.")
        problem = compare(expected, out.value, rtol=self.rtol, atol=self.atol, check_dtype=self.check_dtype)
        if problem is None:
            return None
        extra = None
        if self.diagnose is not None:
            try:
                extra = self.diagnose(expected, out.value, case)
            except Exception:
                extra = None
        return self._with_hint(problem, extra)

    def _with_hint(self, msg: str, extra: str | None = None) -> str:
        parts = [msg]
        if extra:
            parts.append(str(extra))
        if self.hints:
            parts.append(f"Hint: {self.hints[0]}")
        return " ".join(parts)

    def grade(self, fn: Any) -> Feedback:
        """Same as :meth:`check` (the common name of the grading method of every question)."""
        return self.check(fn)
