"""Live rendering of bncourse.exercises: widget callbacks grade through the pure functions and never raise."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from bncourse.exercises import Case, CodeExercise, MultipleChoice, Numeric, registry  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


def ref(x):
    return x - x.mean(axis=0)


def code_exercise():
    return CodeExercise(id="w-code", prompt="center the columns", function_name="center", reference=ref,
                        cases=[Case((np.arange(6.0).reshape(3, 2),), label="3x2")],
                        hints=["axis=0", "broadcasting"], solution="def center(x):\n    return x - x.mean(0)\n",
                        timeout=0.5)


def test_multiple_choice_widget_grades_and_behaves_like_radio_buttons():
    q = MultipleChoice(id="w-mc", prompt="$x$?", options=["A", "B", "C"], answer=1, hint="B")
    w = q.widget()
    w.check.click()
    assert "No option selected" in w.feedback.value
    w.choices[0].value = True
    w.choices[1].value = True  # single answer: ticking B unticks A
    assert [b.value for b in w.choices] == [False, True, False]
    w.check.click()
    assert "Correct!" in w.feedback.value
    w.choices[2].value = True
    w.check.click()
    assert "“C” is not the right answer" in w.feedback.value and "#c0504d" in w.feedback.value


def test_multi_answer_widget():
    q = MultipleChoice(id="w-multi", prompt="?", options=["A", "B", "C"], answer=[0, 2])
    w = q.widget()
    w.choices[0].value = True
    w.check.click()
    assert "ticked 1 of the 2" in w.feedback.value
    w.choices[2].value = True
    w.check.click()
    assert "Correct! All 2 right options" in w.feedback.value


def test_numeric_widget():
    w = Numeric(id="w-num", prompt="?", answer=0.4, tol=1e-3, units="s").widget()
    w.answer.value = "0.5"
    w.check.click()
    assert "0.5 is too high" in w.feedback.value
    w.answer.value = "<img src=x onerror=alert(1)>"
    w.check.click()
    assert "&lt;img" in w.feedback.value and "<img" not in w.feedback.value
    w.answer.value = "2/5 s"
    w.check.click()
    assert "Correct" in w.feedback.value


def test_code_widget_looks_the_function_up_at_click_time():
    ns: dict = {}
    w = code_exercise().widget(namespace=ns)
    w.check.click()
    assert "There is no function <code>center</code>" in w.feedback.value
    ns["center"] = lambda x: x
    w.check.click()
    assert "wrong values" in w.feedback.value
    ns["center"] = ref  # re-defined: picked up without rebuilding the widget
    w.check.click()
    assert "All 1 cases pass" in w.feedback.value


def test_code_widget_survives_a_raising_or_looping_function():
    def raising(x):
        raise ZeroDivisionError("division by zero")

    def looping(x):
        while True:
            pass

    ns = {"center": raising}
    w = code_exercise().widget(namespace=ns)
    w.check.click()  # must not raise
    assert "raised ZeroDivisionError: division by zero" in w.feedback.value
    ns["center"] = looping
    w.check.click()
    assert "did not return within 0.5 s" in w.feedback.value


def test_callbacks_never_raise_even_when_the_checker_fails():
    class BrokenNamespace(dict):
        def get(self, key, default=None):
            raise RuntimeError("namespace exploded")

    w = code_exercise().widget(namespace=BrokenNamespace())
    w.check.click()
    assert "The checker itself failed (RuntimeError: namespace exploded)" in w.feedback.value


def test_code_widget_hints_and_solution_on_request():
    w = code_exercise().widget(namespace={})
    assert w.hints_box.value == "" and w.solution_box.value == ""
    w.hint_button.click()
    assert "axis=0" in w.hints_box.value and "broadcasting" not in w.hints_box.value
    w.hint_button.click()
    w.hint_button.click()
    assert "broadcasting" in w.hints_box.value and "no more hints" in w.hints_box.value
    w.solution_button.click()
    assert "def center(x):" in w.solution_box.value
    w.solution_button.click()
    assert w.solution_box.value == ""


def test_mime_bundle_offers_the_widget_and_the_static_quiz():
    bundle = code_exercise()._repr_mimebundle_()
    assert "text/html" in bundle and "text/plain" in bundle
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]


def test_emphasis_renders_in_the_widget_and_in_the_static_quiz():
    from bncourse.exercises.static_html import render

    q = MultipleChoice(id="w-em", prompt="What does *internal covariate shift* mean, **exactly**?",
                       options=["the *input* of a layer", "B"], answer=0, hint="*internal*")
    w = q.widget()
    html_of_widget = " ".join(getattr(child, "value", "") for child in w.children
                              if isinstance(getattr(child, "value", None), str))
    html_of_widget += " ".join(getattr(row.children[1], "value", "") for row in w.children
                               if hasattr(row, "children") and len(row.children) == 2)
    for page in (html_of_widget, render(q)):
        assert "<em>internal covariate shift</em>" in page and "<strong>exactly</strong>" in page
        assert "*internal" not in page
    assert "<em>input</em>" in render(q) and "<em>input</em>" in html_of_widget


def test_code_widget_shows_printed_output_briefly():
    def center(x):
        print("debugging" * 1000)
        return x

    w = code_exercise().widget(namespace={"center": center})
    w.check.click()
    assert "printed: “debugging" in w.feedback.value and "more characters not shown" in w.feedback.value
    assert len(w.feedback.value) < 3000
