"""Grading logic of bncourse.exercises: quizzes, code checks, malformed definitions, escaping, widgets."""
from __future__ import annotations

import html
import json
import re
import time

import numpy as np
import pytest

from bncourse.exercises import Case, CodeExercise, Feedback, MultipleChoice, Numeric
from bncourse.exercises import markup, registry
from bncourse.exercises.static_html import render


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


def mc(**kw):
    args = dict(id="t-mc", prompt="Min-max maps into ...", options=["$[0, 1]$", "mean 0, std 1", "$[-1, 1]$"],
                answer=0, feedback={1: "That is standardization."}, hint="Look at the formula.",
                explanation="The minimum maps to 0.")
    args.update(kw)
    return MultipleChoice(**args)


def multi(**kw):
    args = dict(id="t-multi", prompt="Which are buffers?", options=["running_mean", "weight", "running_var", "bias"],
                answer=[0, 2], feedback={1: "weight is trained."}, hint="named_buffers()")
    args.update(kw)
    return MultipleChoice(**args)


def num(**kw):
    args = dict(id="t-num", prompt="Epoch time?", answer=0.15, tol=0.005, units="s", hint="600 steps")
    args.update(kw)
    return Numeric(**args)


# ----- multiple choice -------------------------------------------------------------------------------------
def test_single_choice_right_and_wrong():
    q = mc()
    right = q.grade(0)
    assert right == Feedback(True, "Correct! The minimum maps to 0.")
    wrong = q.grade(1)
    assert not wrong.passed
    assert "“mean 0, std 1” is not the right answer" in wrong.message
    assert "That is standardization." in wrong.message and "Hint: Look at the formula." in wrong.message
    assert "Hint" in q.grade(2).message and "standardization" not in q.grade(2).message
    assert q.grade(np.int64(0)).passed  # NumPy integers are option numbers too


@pytest.mark.parametrize("selection, snippet", [
    (None, "No option selected"), ([], "No option selected"), (7, "There is no option 7"),
    (-1, "There is no option -1"), ([0, 1], "exactly one right answer"), ("0", "not '0'"),
    (True, "not True"), ([0.5], "must be integers"),
])
def test_single_choice_invalid_selections(selection, snippet):
    fb = mc().grade(selection)
    assert not fb.passed and snippet in fb.message


def test_multi_answer_partial_wrong_and_right():
    q = multi()
    assert q.grade([2, 0]).passed and q.grade({0, 2}).passed
    partial = q.grade([0])
    assert not partial.passed and "ticked 1 of the 2 right options" in partial.message
    assert "should not be ticked" not in partial.message
    extra = q.grade([0, 1, 2])
    assert not extra.passed and "“weight” should not be ticked. weight is trained." in extra.message
    assert "still missing" not in extra.message
    both = q.grade([1, 3])
    assert "“weight”" in both.message and "“bias”" in both.message and "ticked 0 of the 2" in both.message
    assert both.message.endswith("Hint: named_buffers()")
    assert "No option ticked" in q.grade([]).message


@pytest.mark.parametrize("kwargs, error", [
    (dict(answer=3), "answer index 3 is out of range"),
    (dict(answer=-1), "out of range"),
    (dict(answer=[]), "answer list is empty"),
    (dict(answer=[0, 0]), "duplicates"),
    (dict(answer=[0, 9]), "out of range"),
    (dict(options=[]), "at least 2 options"),
    (dict(options=["only one"]), "at least 2 options"),
    (dict(options=["a", "a", "b"]), "duplicate options"),
    (dict(options=["a", "  "]), "option 1 is empty"),
    (dict(feedback={5: "x"}), "feedback key 5"),
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="costs $5"), "unmatched '$'"),
    (dict(hint="a `b"), "unmatched backtick"),
    (dict(id=""), "id must be"),
    (dict(id="has space"), "id must be"),
    (dict(id="<x>"), "id must be"),
])
def test_malformed_multiple_choice_rejected(kwargs, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        mc(**kwargs)


@pytest.mark.parametrize("kwargs, exc", [(dict(answer="0"), TypeError), (dict(answer=[0.0]), TypeError),
                                         (dict(options="ab"), TypeError), (dict(answer=True), TypeError)])
def test_malformed_multiple_choice_types(kwargs, exc):
    with pytest.raises(exc):
        mc(**kwargs)


def test_duplicate_ids_rejected_but_rerun_allowed():
    mc()
    mc()  # re-running the same cell defines the same question again: fine
    with pytest.raises(ValueError, match="duplicate id 't-mc'"):
        mc(prompt="A different question")
    with pytest.raises(ValueError, match="duplicate id 't-mc'"):
        num(id="t-mc")
    registry.forget("t-mc")
    mc(prompt="A different question")


# ----- numeric -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["0.15", " 0.15 ", "0.15 s", "0.15s", "3/20", "1.5e-1", "+.15", "0.154", 0.15, 0.146])
def test_numeric_accepts(typed):
    assert num().grade(typed).passed, num().grade(typed)


@pytest.mark.parametrize("typed, snippet", [
    ("0.2", "0.2 is too high: it is not within ±0.005 s of the answer."),
    ("0.1", "0.1 is too low"),
    (0.156, "0.156 is too high"),
    ("abc", "“abc” is not a number"),
    ("0,15", "“0,15” is not a number"),
    ("nan", "is not a number"), ("inf", "is not a number"), ("1/0", "is not a number"),
    ("1_0", "is not a number"), ("0.15 -s", "is not a number"), ("0.15 µs", "“µs” is not that unit"),
    ("0.15 ms", "Give the answer in s: “ms” is not that unit"),
    ("", "Type a number first"), (None, "Type a number first"), (float("nan"), "is not a number"),
    (True, "is not a number"), ([0.15], "is not a number"),
])
def test_numeric_rejects_with_reason(typed, snippet):
    fb = num().grade(typed)
    assert not fb.passed and snippet in fb.message, fb


def test_numeric_tolerance_edges_and_default():
    q = num(id="t-edge", tol=0.001, answer=0.4, units=None)
    assert q.grade("0.401").passed and q.grade("0.399").passed  # exactly at the tolerance
    assert not q.grade("0.4011").passed
    assert "within" in q.grade("0.4").message and " s " not in q.grade("0.4").message
    exact = Numeric(id="t-exact", prompt="?", answer=1 / 3)
    assert exact.grade(str(1 / 3)).passed and not exact.grade("0.333").passed
    assert not num(id="t-nounit", units=None).grade("0.15 s").passed  # no unit defined: text is not a number


@pytest.mark.parametrize("kwargs, exc, error", [
    (dict(tol=-0.1), ValueError, "tol must be >= 0"),
    (dict(tol=float("nan")), ValueError, "tol must be a finite number"),
    (dict(answer=float("inf")), ValueError, "answer must be finite"),
    (dict(answer="0.15"), TypeError, "answer must be a real number"),
    (dict(units=" "), ValueError, "units is empty"),
])
def test_malformed_numeric_rejected(kwargs, exc, error):
    with pytest.raises(exc, match=re.escape(error)):
        num(**kwargs)


# ----- code exercises ----------------------------------------------------------------------------------------
def standardize_ref(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def make_code(**kw):
    rng = np.random.default_rng(0)
    args = dict(id="t-code", prompt="standardize columns", function_name="standardize", reference=standardize_ref,
                cases=[Case(args=(rng.normal(size=(6, 3)),), label="(6, 3) normal"),
                       Case(args=(rng.uniform(size=(4, 2)),))],
                hints=["Use axis=0."], solution="def standardize(x):\n    return (x - x.mean(0)) / x.std(0)\n",
                timeout=0.5)
    args.update(kw)
    return CodeExercise(**args)


def test_code_reference_and_solution_pass():
    ex = make_code()
    assert ex.check(standardize_ref) == Feedback(True, "All 2 cases pass ((6, 3) normal, case 2). Well done!")
    assert ex.check(ex.solution_function()).passed
    assert [c.label for c in ex.cases] == ["(6, 3) normal", "case 2"]


def test_code_raises_reports_type_message_and_line():
    def standardize(x):
        m = x.mean(axis=0)
        raise ValueError("boom")

    fb = make_code().check(standardize)
    assert not fb.passed and fb.case == "(6, 3) normal"
    assert "raised ValueError: boom" in fb.message
    assert 'raise ValueError("boom")' in fb.message and "line" in fb.message
    assert fb.message.endswith("Hint: Use axis=0.")


def test_code_timeout_is_reported_and_the_loop_stopped():
    def standardize(x):
        while True:
            pass

    t0 = time.perf_counter()
    fb = make_code().check(standardize)
    assert time.perf_counter() - t0 < 3.0
    assert not fb.passed and "did not return within 0.5 s" in fb.message
    assert "still running" not in fb.message  # the pure-Python loop was interrupted


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaN/inf cases (np.errstate is per thread)
@pytest.mark.parametrize("fn, snippet", [
    (lambda x: None, "is None: did you forget the `return` statement?"),
    (lambda x: standardize_ref(x).tolist(), "is a list of length 6, but a NumPy array (np.ndarray) of shape (6, 3)"),
    (lambda x: tuple(standardize_ref(x)), "is a tuple of length 6"),
    (lambda x: 3.0, "is a float, but a NumPy array"),
    (lambda x: standardize_ref(x).T, "has shape (3, 6), but the expected shape is (6, 3). It looks transposed."),
    (lambda x: x.mean(axis=0), "has shape (3,), but the expected shape is (6, 3). Did you reduce over the wrong axis"),
    (lambda x: standardize_ref(x).astype(np.float32), "has dtype float32, but the expected dtype is float64"),
    (lambda x: x - x.mean(axis=0), "wrong values at"),
    (lambda x: standardize_ref(x) * np.where(np.arange(x.shape[1]) == 1, np.nan, 1.0),
     "contains NaN at 6 of 18 positions, first at index (0, 1)"),
    (lambda x: standardize_ref(x) / 0.0, "contains inf"),
    (42, "is int object, not a function"),
    (None, "There is no function `standardize` to check"),
])
def test_code_wrong_results_get_specific_messages(fn, snippet):
    fb = make_code().check(fn)
    assert not fb.passed and snippet in fb.message, fb.message


def test_code_wrong_values_message_locates_the_largest_error():
    def standardize(x):
        y = standardize_ref(x)
        y[4, 2] += 0.5
        return y

    fb = make_code().check(standardize)
    assert "wrong values at 1 of 18 positions" in fb.message
    assert "|got - expected| = 0.5 is at index (4, 2)" in fb.message


def test_code_torch_tensor_instead_of_array():
    torch = pytest.importorskip("torch")
    fb = make_code().check(lambda x: torch.from_numpy(standardize_ref(x)))
    assert "is a torch.Tensor of shape (6, 3) and dtype float64, but a NumPy array" in fb.message


def test_code_mutating_input_is_caught_and_cases_stay_intact():
    ex = make_code()
    before = ex.cases[0].args[0].copy()

    def standardize(x):
        x -= x.mean(axis=0)
        return x / x.std(axis=0)

    fb = ex.check(standardize)
    assert not fb.passed and "modified its input `x` in place" in fb.message
    np.testing.assert_array_equal(ex.cases[0].args[0], before)  # the learner worked on copies
    assert ex.check(standardize_ref).passed


def test_code_diagnose_adds_targeted_message_and_a_broken_diagnose_is_ignored():
    def diagnose(expected, got, case):
        return "You used ddof=1." if np.allclose(got, (case.args[0] - case.args[0].mean(0)) / case.args[0].std(0, ddof=1)) else None

    unbiased = lambda x: (x - x.mean(0)) / x.std(0, ddof=1)  # noqa: E731
    assert "You used ddof=1." in make_code(diagnose=diagnose).check(unbiased).message
    registry.forget()
    fb = make_code(diagnose=lambda e, g, c: 1 / 0).check(unbiased)
    assert not fb.passed and "wrong values" in fb.message


def test_code_structured_results_tuple_dict_scalar():
    def ref(x):
        return x.sum(), {"mean": x.mean(0), "n": x.shape[0]}

    ex = CodeExercise(id="t-struct", prompt="p", function_name="f", reference=ref,
                      cases=[Case((np.arange(6.0).reshape(3, 2),))])
    assert ex.check(ref).passed
    assert "has 1 values, but 2 are expected" in ex.check(lambda x: (x.sum(),)).message
    assert "your result[0] is 14, but the expected value is 15" in ex.check(lambda x: (x.sum() - 1, ref(x)[1])).message
    assert "wrong keys: missing ['n']" in ex.check(lambda x: (x.sum(), {"mean": x.mean(0)})).message
    assert "your result[1]['mean'] has shape (3,)" in ex.check(lambda x: (x.sum(), {"mean": x.mean(1), "n": 3})).message


@pytest.mark.parametrize("kwargs, exc, error", [
    (dict(function_name="not valid"), ValueError, "function_name must be a Python identifier"),
    (dict(function_name="lambda"), ValueError, "function_name must be a Python identifier"),
    (dict(reference=3), TypeError, "reference must be callable"),
    (dict(cases=[]), ValueError, "cases must be a non-empty list"),
    (dict(cases=[(1,)]), TypeError, "cases[0] is a tuple, not a Case"),
    (dict(cases=[Case((np.ones((2, 2)),), label="a"), Case((np.ones((3, 2)),), label="a")]), ValueError,
     "duplicate case labels ['a']"),
    (dict(cases=[Case(("text",))]), ValueError, "the reference raised"),
    (dict(rtol=-1e-6), ValueError, "rtol must be a finite number >= 0"),
    (dict(atol=float("nan")), ValueError, "atol must be"),
    (dict(timeout=0), ValueError, "timeout must be > 0"),
    (dict(solution="def standardize(x) return x"), ValueError, "solution has a syntax error"),
    (dict(solution="def other(x):\n    return x\n"), ValueError, "solution does not define 'standardize'"),
    (dict(hints=["$x"]), ValueError, "unmatched"),
    (dict(diagnose="no"), TypeError, "diagnose must be callable"),
])
def test_malformed_code_exercise_rejected(kwargs, exc, error):
    with pytest.raises(exc, match=re.escape(error)):
        make_code(**kwargs)


def test_case_validation():
    with pytest.raises(TypeError, match=re.escape("write args=(x,)")):
        Case(args=np.ones(3))
    with pytest.raises(TypeError, match="kwargs"):
        Case(kwargs={1: 2})


# ----- markup and escaping -----------------------------------------------------------------------------------
def test_markup_segments_and_escapes():
    assert markup.parse("a $x$ b `c` \\$5 $$y$$") == [
        ("text", "a "), ("math", "x"), ("text", " b "), ("code", "c"), ("text", " $5 "), ("displaymath", "y")]
    assert markup.to_html("$a<b$") == '<span class="math notranslate nohighlight">\\(a&lt;b\\)</span>'
    assert markup.parse(markup.literal("cost $5 `x` \\ done")) == [("text", "cost $5 `x` \\ done")]


SCRIPT = "<script>window.pwned=1</script>"


def test_script_in_any_text_renders_inert():
    q = MultipleChoice(id="t-xss", prompt=f"Prompt {SCRIPT} with $x<y$", options=[f"A {SCRIPT}", "B"], answer=0,
                       feedback={1: f"fb {SCRIPT}"}, hint=f"hint {SCRIPT}", explanation=f"ex {SCRIPT}")
    n = Numeric(id="t-xss-num", prompt=SCRIPT, answer=1.0, units=f"<b>u</b>", hint=SCRIPT)
    ex = make_code(prompt=SCRIPT, hints=[SCRIPT], solution=f"def standardize(x):\n    return '{SCRIPT}'\n")
    for page in (render(q), render(n), render(ex)):
        assert "window.pwned" not in page.replace(html.escape(SCRIPT), "")  # only ever escaped
        assert "<b>u</b>" not in page
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)
        assert all("pwned" not in s for s in scripts)
    assert "\\(x&lt;y\\)" in render(q)


def test_static_data_is_json_safe_and_matches_definition():
    q = multi()
    page = render(q)
    data = json.loads(re.search(r'<script type="application/json" class="bnc-data">(.*?)</script>', page).group(1))
    assert data == {"kind": "mc", "multi": True, "correct": [0, 2], "hint": True}
    for key, text in q.message_parts().items():  # every feedback part is pre-rendered, hidden
        if text:
            assert f'data-bnc-msg="{key}" hidden>' in page
    numeric = json.loads(re.search(r'class="bnc-data">(.*?)</script>', render(num())).group(1))
    assert numeric["answer"] == 0.15 and numeric["units"] == "s" and numeric["slack"] >= 0.005


def test_static_code_exercise_shows_task_hints_solution_and_how_to_run():
    page = render(make_code())
    assert "<details><summary>Solution</summary><pre><code>def standardize(x):" in page
    assert "<details><summary>Hint 1</summary>Use axis=0.</details>" in page
    assert "press <em>Check</em>" in page and "2 cases ((6, 3) normal, case 2)" in page
    assert "bnc-data" not in page  # nothing to check in the browser


def test_mime_bundle_has_static_html_and_plain_text():
    bundle = mc()._repr_mimebundle_()
    assert bundle["text/html"].startswith('<div class="bnc-quiz bnc-mc"')
    assert bundle["text/plain"].startswith("<MultipleChoice 't-mc'")
