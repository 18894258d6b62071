"""The live-notebook rendering: ipywidgets that call the pure grading code.

Every callback is wrapped by :func:`_safe`: whatever goes wrong (a learner's function that raises or loops
is already handled by the grader; this catches bugs of the checker itself) is shown in the feedback area and
never raised into the notebook. Code exercises look up their function by name in the notebook's namespace
(IPython's ``user_ns``) when *Check* is pressed, so a re-defined function is picked up.
"""
from __future__ import annotations

import functools
import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets

from . import markup
from .code_exercise import CodeExercise
from .feedback import Feedback
from .question import Question
from .quiz import MultipleChoice, Numeric

_OK = "background:#e6f4ea;border:1px solid #4c9a5f;border-radius:4px;padding:4px 8px"
_BAD = "background:#fdecea;border:1px solid #c0504d;border-radius:4px;padding:4px 8px"
_HINT = "background:#fff8e1;border-radius:4px;padding:4px 8px"


def feedback_html(fb: Feedback) -> str:
    """A :class:`Feedback` as an HTML box (escaped; math left to the frontend's MathJax)."""
    style = _OK if fb.passed else _BAD
    return f'<div class="bnc-feedback" style="{style}">{markup.to_html(fb.message)}</div>'


def _safe(out: widgets.HTMLMath, fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap a widget callback so that it never raises: errors become a message in ``out``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a callback must never raise into the notebook
            out.value = feedback_html(Feedback(
                False, f"The checker itself failed ({markup.literal(type(exc).__name__)}: "
                       f"{markup.literal(exc)}). Please report this; your answer was not graded."))

    return wrapper


def _hint_area(q: Question, out: widgets.HTMLMath) -> list[widgets.Widget]:
    if not q.hint:
        return []
    box = widgets.HTMLMath(value="")
    button = widgets.Button(description="Hint", tooltip="show or hide a hint")

    def toggle(_b: Any = None) -> None:
        box.value = "" if box.value else f'<div style="{_HINT}">{markup.to_html(q.hint)}</div>'

    button.on_click(_safe(out, toggle))
    return [button, box]


def _prompt(q: Question, title: str) -> widgets.HTMLMath:
    return widgets.HTMLMath(value=f"<b>{html.escape(title)}</b><br>{markup.to_html(q.prompt)}")


def build_multiple_choice(q: MultipleChoice) -> widgets.VBox:
    out = widgets.HTMLMath(value="")
    boxes = [widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="auto")) for _ in q.options]
    rows = [widgets.HBox([b, widgets.HTMLMath(value=markup.to_html(o))]) for b, o in zip(boxes, q.options)]

    def exclusive(change: Mapping[str, Any]) -> None:  # single answer: behave like radio buttons
        if change.get("new") and not q.multi:
            for b in boxes:
                if b is not change.get("owner"):
                    b.value = False
        out.value = ""

    for b in boxes:
        b.observe(_safe(out, exclusive), names="value")

    def check(_b: Any = None) -> None:
        picked = [i for i, b in enumerate(boxes) if b.value]
        out.value = feedback_html(q.grade(picked if q.multi else (picked[0] if len(picked) == 1 else picked)))

    button = widgets.Button(description="Check", button_style="primary")
    button.on_click(_safe(out, check))
    title = "Self-check (several answers may be right)" if q.multi else "Self-check"
    hint = _hint_area(q, out)
    w = widgets.VBox([_prompt(q, title), *rows, widgets.HBox([button, *hint[:1]]), *hint[1:], out])
    w.check, w.feedback, w.choices = button, out, boxes  # handles for tests and scripting
    return w


def build_numeric(q: Numeric) -> widgets.VBox:
    out = widgets.HTMLMath(value="")
    text = widgets.Text(placeholder="your answer", continuous_update=False)
    units = [widgets.HTMLMath(value=markup.to_html(q.units))] if q.units else []

    def check(_b: Any = None) -> None:
        out.value = feedback_html(q.grade(text.value))

    button = widgets.Button(description="Check", button_style="primary")
    button.on_click(_safe(out, check))
    hint = _hint_area(q, out)
    w = widgets.VBox([_prompt(q, "Self-check"), widgets.HBox([text, *units]),
                      widgets.HBox([button, *hint[:1]]), *hint[1:], out])
    w.check, w.feedback, w.answer = button, out, text
    return w


def _user_namespace() -> Mapping[str, Any]:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    ip = get_ipython()
    return ip.user_ns if ip is not None else {}


def build_code(ex: CodeExercise, namespace: Mapping[str, Any] | None = None) -> widgets.VBox:
    out = widgets.HTMLMath(value="")
    hints_box = widgets.HTMLMath(value="")
    solution_box = widgets.HTML(value="")
    shown = {"hints": 0}

    def check(_b: Any = None) -> None:
        ns = namespace if namespace is not None else _user_namespace()
        out.value = '<div style="color:#666">checking ...</div>'
        out.value = feedback_html(ex.check(ns.get(ex.function_name)))

    def next_hint(_b: Any = None) -> None:
        if not ex.hints:
            hints_box.value = f'<div style="{_HINT}">This exercise has no hints.</div>'
            return
        shown["hints"] = min(shown["hints"] + 1, len(ex.hints))
        items = "".join(f"<li>{markup.to_html(h)}</li>" for h in ex.hints[: shown["hints"]])
        more = "" if shown["hints"] < len(ex.hints) else " (no more hints)"
        hints_box.value = f'<div style="{_HINT}"><b>Hints{more}</b><ol>{items}</ol></div>'

    def toggle_solution(_b: Any = None) -> None:
        if solution_box.value:
            solution_box.value = ""
        elif ex.solution is None:
            solution_box.value = "<i>This exercise has no published solution.</i>"
        else:
            solution_box.value = f"<pre>{html.escape(ex.solution)}</pre>"

    b_check = widgets.Button(description="Check", button_style="primary",
                             tooltip=f"run your {ex.function_name} against the reference")
    b_hint = widgets.Button(description="Hint")
    b_sol = widgets.Button(description="Solution", tooltip="show or hide the solution")
    b_check.on_click(_safe(out, check))
    b_hint.on_click(_safe(out, next_hint))
    b_sol.on_click(_safe(out, toggle_solution))
    intro = widgets.HTMLMath(value=(
        f"<b>Code exercise: write <code>{html.escape(ex.function_name)}()</code></b><br>{markup.to_html(ex.prompt)}"
        f"<br><i>Define <code>{html.escape(ex.function_name)}</code> in a cell, run it, then press Check "
        f"({len(ex.cases)} test cases).</i>"))
    w = widgets.VBox([intro, widgets.HBox([b_check, b_hint, b_sol]), out, hints_box, solution_box])
    w.check, w.feedback, w.hint_button, w.solution_button = b_check, out, b_hint, b_sol
    w.hints_box, w.solution_box = hints_box, solution_box
    return w


def build(q: Question, namespace: Mapping[str, Any] | None = None) -> widgets.VBox:
    """The live widget of any question."""
    if isinstance(q, MultipleChoice):
        return build_multiple_choice(q)
    if isinstance(q, Numeric):
        return build_numeric(q)
    if isinstance(q, CodeExercise):
        return build_code(q, namespace)
    raise TypeError(f"no widget rendering for {type(q).__name__}")
