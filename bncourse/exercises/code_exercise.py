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

from . import guard, markup
from .compare import compare, is_tensor
from .feedback import Feedback
from .question import Question
from .safe_text import cap, exception_text, safe_str, type_name
from .sandbox import Outcome, call_with_timeout

_PRINT_SHOWN = 300  # characters of a failing case's printed output quoted in the message

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


def _same(a: Any, b: Any, depth: int = 0) -> bool:
    """Whether ``a`` and ``b`` (an argument before/after a call; ``a`` a deep copy of ``b``'s old value)
    hold identical values.

    Objects compared by identity (``object.__eq__``) are compared by their attributes, so that a deep copy
    of an untouched object counts as unchanged: plain objects, ``torch.nn.Module`` (parameters, buffers and
    ``training``). A random generator (``np.random.Generator`` / ``RandomState``) is never reported: drawing
    from a generator that was passed in is using it, not modifying an input. Anything that cannot be
    compared counts as unchanged (do not accuse the learner).
    """
    if depth > 20:
        return True
    if isinstance(a, (np.random.Generator, np.random.RandomState, np.random.BitGenerator)):
        return True
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if is_tensor(a):
        return is_tensor(b) and a.shape == b.shape and bool((a == b).logical_or((a != a) & (b != b)).all())
    if _is_module(a):
        return (_is_module(b) and a.training == b.training
                and _same(dict(a.state_dict()), dict(b.state_dict()), depth + 1)
                and all(x.training == y.training for x, y in zip(a.modules(), b.modules())))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k], depth + 1) for k in a)
    if type(a).__eq__ is object.__eq__:                 # identity: compare what the objects hold
        if type(a) is not type(b):
            return False
        try:
            return _same(dict(vars(a)), dict(vars(b)), depth + 1)
        except TypeError:                               # no __dict__ (slots, a C type): cannot tell
            return True
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:
        return True  # an object we cannot compare: do not accuse the learner


def _is_module(x: object) -> bool:
    """Whether ``x`` is a ``torch.nn.Module`` (recognised without importing torch)."""
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(x).__mro__)


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
        """Run ``fn`` on every case; pass if all results match the reference.

        Never raises, whatever ``fn`` returns, raises or prints. Whatever ``fn`` patches in the namespaces the
        checker uses (see ``guard``), and any change to this exercise's own attributes, cases and expected
        values, is undone after each call, before the result is compared.
        """
        name = markup.code(self.function_name)
        snapshot = guard.Snapshot(self)
        saved = copy.deepcopy((self.cases, self.expected))
        try:
            return self._check_all(fn, snapshot, *copy.deepcopy(saved))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. a result whose own methods raise while it is examined
            return Feedback(False, f"The checker could not examine what {name} returned: "
                                   f"{markup.literal(exception_text(exc))}. Return a plain result (an array, a "
                                   f"number, a tuple of them) rather than an object with unusual behaviour.")
        finally:
            snapshot.restore()
            self.cases, self.expected = saved

    def grade(self, fn: Any) -> Feedback:
        """Same as :meth:`check` (the common name of the grading method of every question)."""
        return self.check(fn)

    def _check_all(self, fn: Any, snapshot: guard.Snapshot, cases: list[Case], expected: list[Any]) -> Feedback:
        name = markup.code(self.function_name)
        if fn is None:
            return Feedback(False, f"There is no function {name} to check: define it (run its cell) first.")
        if not callable(fn):
            return Feedback(False, f"{name} is {markup.literal(type_name(fn))} object, not a function.")
        printed = 0
        for case, want in zip(cases, expected):
            problem, extra, out = self._check_case(fn, case, want, snapshot)
            printed += out.printed_chars
            if problem is not None:
                where = f"Case “{markup.literal(case.label)}”: "
                return Feedback(False, self._with_hint(where + problem + _printed_note(name, out), extra),
                                case=case.label)
        labels = ", ".join(markup.literal(c.label) for c in cases)
        note = (f" ({name} printed {printed:,} characters while it was checked; the checker does not show "
                f"them when all cases pass.)" if printed else "")
        return Feedback(True, f"All {len(cases)} cases pass ({labels}). Well done!{note}")

    def _check_case(self, fn: Callable, case: Case, expected: Any,
                    snapshot: guard.Snapshot) -> tuple[str | None, str | None, Outcome]:
        """(problem, diagnosis, outcome) of one case; problem is None when the case passes."""
        args, kwargs = copy.deepcopy((case.args, dict(case.kwargs)))
        before = copy.deepcopy((args, kwargs))
        out = call_with_timeout(fn, args, kwargs, self.timeout)
        snapshot.restore()  # before anything of the checker runs again
        name = markup.code(self.function_name)
        if out.timed_out:
            return _timeout_message(name, out, self.timeout), None, out
        # Everything below may run learner code too: the __str__ of an exception it raised, the
        # __array__ / __eq__ / __iter__ of what it returned (a generator...), also from the exercise's
        # diagnose. It runs under the same time limit, in a thread that is abandoned when it overruns.
        examined = call_with_timeout(self._examine, (out, case, expected, args, kwargs, before), {},
                                     self.timeout)
        snapshot.restore()
        if examined.timed_out:
            return _examine_timeout_message(name, examined, self.timeout), None, out
        if examined.error is not None:
            raise examined.error                          # reported by check() as an unexaminable result
        problem, extra = examined.value
        return problem, extra, out

    def _examine(self, out: Outcome, case: Case, expected: Any, args: tuple, kwargs: dict,
                 before: tuple) -> tuple[str | None, str | None]:
        """(problem, diagnosis) of a call that ended in time; problem is None when the case passes."""
        name = markup.code(self.function_name)
        if out.error is not None:
            line = f" (at {markup.code(cap(out.error_line, 200))})" if out.error_line else ""
            return f"{name} raised {markup.literal(exception_text(out.error))}{line}.", None
        for pos, (b, a) in enumerate(zip(before[0], args)):
            if not _same(b, a):
                return (f"{name} modified its input {markup.code(self._arg_name(pos))} in place. Leave the "
                        f"inputs unchanged: compute on a copy (x = x.copy()) or use out-of-place operations "
                        f"(x = x - m, not x -= m)."), None
        for key in before[1]:
            if not _same(before[1][key], kwargs[key]):
                return f"{name} modified its input {markup.code(key)} in place.", None
        problem = compare(expected, out.value, rtol=self.rtol, atol=self.atol, check_dtype=self.check_dtype)
        if problem is None:
            return None, None
        extra = None
        if self.diagnose is not None:
            try:
                extra = self.diagnose(expected, out.value, case)
            except Exception:
                extra = None
        return problem, _diagnosis(extra)

    def _with_hint(self, msg: str, extra: str | None = None) -> str:
        parts = [msg]
        if extra:
            parts.append(extra)
        if self.hints:
            parts.append(f"Hint: {self.hints[0]}")
        return " ".join(parts)


def _timeout_message(name: str, out: Outcome, limit: float) -> str:
    """Why a call failed its time limit, with the time it took."""
    if out.finished:  # it ended by itself, but late: the checker could not interrupt it earlier
        return (f"{name} took {out.elapsed:.2f} s, over the {limit:g} s limit. It could not be stopped at the "
                f"limit: a single call into compiled code that holds Python's interpreter lock (a huge integer "
                f"power, a pathological regular expression...) runs to its end.")
    msg = (f"{name} did not return within {limit:g} s (the limit; abandoned after {out.elapsed:.2f} s): an "
           f"infinite loop, or a very slow one?")
    if not out.stopped:
        msg += (" It is still running in the background: a long call into compiled code cannot be interrupted "
                "until it returns. If the notebook becomes slow, restart the kernel.")
    return msg


def _examine_timeout_message(name: str, examined: Outcome, limit: float) -> str:
    """Why examining a call's result (or its exception) failed the time limit."""
    msg = (f"{name} returned in time, but examining what it returned (or raised) did not finish within "
           f"{limit:g} s: its own methods ({markup.code('__array__')}, {markup.code('__eq__')}, "
           f"{markup.code('__str__')}, a generator's body...) run code that loops or is very slow. Return a "
           f"plain result (an array, a number, a tuple of them).")
    if not examined.stopped:
        msg += " It is still running in the background; if the notebook becomes slow, restart the kernel."
    return msg


def _diagnosis(extra: object) -> str | None:
    """The exercise's ``diagnose`` message: its markup when well-formed, else shown literally; capped."""
    if extra is None:
        return None
    text = safe_str(extra, 1000)
    try:
        markup.parse(text)
    except markup.MarkupError:
        return markup.literal(text)
    return text


def _printed_note(name: str, out: Outcome) -> str:
    """A short quote of what the learner's function printed during the failing case."""
    if not out.printed_chars:
        return ""
    shown = out.printed[:_PRINT_SHOWN].replace("\r", "").strip().replace("\n", " ⏎ ")
    more = out.printed_chars - min(out.printed_chars, _PRINT_SHOWN)
    cut_note = f" … [{more:,} more characters not shown]" if more else ""
    return f" {name} printed: “{markup.literal(shown)}”{cut_note}."
