"""The checker against hostile and odd learner code: check() and grade() never raise, every message is safe and
short, patches made during a check are undone, printed output is captured, time limits are reported honestly.
Also: the numeric-answer grammar on the shared list of inputs (the website's JavaScript is tested on the same
list in test_site.py), the emphasis markup, unknown markup in the book's questions, and the package's imports.
"""
from __future__ import annotations

import ast
import builtins
import html
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from IPython.core.inputtransformer2 import TransformerManager

import bncourse.exercises as exercises
from bncourse.exercises import Case, CodeExercise, Feedback, MultipleChoice, Numeric, markup, registry
from bncourse.exercises import code_exercise, compare, guard, numeric_answer, renderers
from bncourse.exercises.static_html import render

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = json.loads((ROOT / "tests" / "data" / "numeric_answers.json").read_text(encoding="utf-8"))
MESSAGE_LIMIT = 2500  # no feedback message may be longer than this, whatever the learner's code does


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


def ref(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def exercise(**kw) -> CodeExercise:
    args = dict(id="r-code", prompt="standardize", function_name="f", reference=ref,
                cases=[Case((np.arange(6.0).reshape(3, 2),), label="3x2")], hints=["axis=0"], timeout=0.5)
    args.update(kw)
    return CodeExercise(**args)


def assert_safe(fb: Feedback) -> None:
    """A message that renders (well-formed markup), escapes everything, and is short."""
    assert isinstance(fb, Feedback) and isinstance(fb.message, str)
    page = markup.to_html(fb.message)  # raises on malformed markup
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert len(fb.message) <= MESSAGE_LIMIT, len(fb.message)


# ----- hostile results, exceptions and output --------------------------------------------------------------
class Hostile:
    """Every method the checker might call raises."""

    def __repr__(self):
        raise ValueError("no repr")

    def __str__(self):
        raise ValueError("no str")

    def __eq__(self, other):
        raise ValueError("no eq")

    __ne__ = __eq__
    __hash__ = None

    def __len__(self):
        raise ValueError("no len")

    def astype(self, *args, **kwargs):
        raise ValueError("no astype")

    def __array__(self, *args, **kwargs):
        raise ValueError("no array")

    def __float__(self):
        raise ValueError("no float")


class HostileError(Exception):
    def __str__(self):
        raise RuntimeError("no str")


class HostileArray(np.ndarray):
    def astype(self, *args, **kwargs):
        raise ValueError("no astype")

    def __eq__(self, other):
        raise ValueError("no eq")

    def __repr__(self):
        raise ValueError("no repr")

    def __array_finalize__(self, obj):
        if getattr(obj, "_armed", False):
            raise ValueError("no finalize")


class HostileList(list):
    def __len__(self):
        raise ValueError("no len")

    def __iter__(self):
        raise ValueError("no iter")


class HostileNumber(float):
    def __format__(self, spec):
        raise ValueError("no format")

    def __sub__(self, other):
        raise ValueError("no sub")


def _raise(exc):
    raise exc


def object_array(item, shape):
    out = np.empty(shape, dtype=object)
    out.fill(item)
    return out


def armed(x):
    y = ref(x).view(HostileArray)
    y._armed = True
    return y


HOSTILE = {
    "raises, __str__ raises": (lambda x: _raise(HostileError()), "raised HostileError: <a HostileError object whose __str__ raised RuntimeError>"),
    "returns object whose methods raise": (lambda x: Hostile(), "is a Hostile, but a NumPy array"),
    "returns list of hostile objects": (lambda x: [Hostile()] * 3, "is a list of length 3"),
    "returns list subclass whose len raises": (lambda x: HostileList([1, 2, 3]), "is a HostileList of length 3"),
    "returns masked array with masked entries": (lambda x: np.ma.masked_array(ref(x), mask=[[1, 0], [0, 0], [0, 1]]),
                                                 "masked array with 2 masked entries"),
    "returns wrong ndarray subclass values": (lambda x: (ref(x) + 1).view(HostileArray), "wrong values at 6 of 6"),
    "returns armed ndarray subclass": (armed, None),
    "returns object array": (lambda x: ref(x).astype(object), "has dtype object"),
    "returns hostile object array": (lambda x: object_array(Hostile(), (3, 2)), "has dtype object"),
    "returns string with $ and HTML": (lambda x: "$x$ <script>alert(1)</script> `a` *b*", "is a str"),
    "raises with $ and HTML": (lambda x: _raise(ValueError("$x <script>alert(1)</script> `y *z")),
                               "raised ValueError: \\$x <script>alert(1)</script> \\`y \\*z"),
    "raises a huge message": (lambda x: _raise(ValueError("$" * 10**6)), "more characters cut"),
    "returns hostile float": (lambda x: HostileNumber(1.0), "is a HostileNumber, but a NumPy array"),
    "calls sys.exit": (lambda x: sys.exit(3), "raised SystemExit: 3"),
    "prints a lot": (lambda x: (print("<b>$</b>" * 100_000), ref(x) + 1)[1], "more characters not shown"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_check_never_raises_and_the_message_is_safe(name, capsys):
    fn, snippet = HOSTILE[name]
    fb = exercise().check(fn)
    assert_safe(fb)
    if snippet is not None:
        assert not fb.passed and snippet in fb.message, fb.message
    assert capsys.readouterr().out == ""  # nothing the function printed streamed out


def test_hostile_results_inside_structures_and_with_check_dtype_off():
    def ref2(x):
        return x.sum(), {"m": x.mean(0)}

    ex = exercise(id="r-struct", reference=ref2, check_dtype=False)
    for fn in (lambda x: (Hostile(), {"m": Hostile()}), lambda x: (1.0, {"m": object_array(Hostile(), (2,))}),
               lambda x: (HostileNumber(14.0), {"m": x.mean(0)}), lambda x: HostileList([1, 2])):
        fb = ex.check(fn)
        assert_safe(fb)
        assert not fb.passed


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_masked_array_without_masked_entries_and_subclasses_are_compared_as_plain_arrays():
    ex = exercise()
    assert ex.check(lambda x: np.ma.masked_array(ref(x))).passed
    assert ex.check(lambda x: ref(x).view(HostileArray)).passed  # its overridden methods are never called
    assert ex.check(lambda x: np.asmatrix(ref(x))).passed


def test_dollar_and_html_in_an_expected_string_are_escaped():
    ex = exercise(id="r-str", reference=lambda x: "$a$ <b>", cases=[Case((1,))])
    fb = ex.check(lambda x: "$c$ <script>alert(1)</script>")
    assert_safe(fb)
    assert "'\\$c\\$ <script>alert(1)</script>'" in fb.message
    assert "&lt;script&gt;" in markup.to_html(fb.message)


def test_printed_output_is_captured_and_quoted_briefly(capsys):
    stdout, stderr = sys.stdout, sys.stderr

    def f(x):
        print("mean is", x.mean())
        print("a second line", file=sys.stderr)
        return ref(x) + 1

    fb = exercise().check(f)
    assert "`f` printed: “mean is 2.5 ⏎ a second line”. Hint: axis=0" in fb.message
    assert sys.stdout is stdout and sys.stderr is stderr
    assert capsys.readouterr() == ("", "")
    ok = exercise().check(lambda x: (print("debug"), ref(x))[1])
    assert ok.passed and "printed 6 characters" in ok.message


def test_printing_from_other_threads_is_not_captured(capsys):
    import threading

    def f(x):
        t = threading.Thread(target=print, args=("from another thread",))
        t.start()
        t.join()
        return ref(x)

    assert exercise().check(f).passed
    assert "from another thread" in capsys.readouterr().out


# ----- patching the checker -------------------------------------------------------------------------------
def _patch_compare(x):
    code_exercise.compare = lambda *a, **k: None
    compare.compare = lambda *a, **k: None
    return x


def _patch_numpy(x):
    np.isclose = lambda a, b, **k: np.ones(np.broadcast(a, b).shape, bool)
    np.isfinite = lambda a: np.ones(np.shape(a), bool)
    np.allclose = lambda *a, **k: True
    return x


def _patch_builtins(x):
    builtins.isinstance = lambda *a: True
    builtins.len = lambda *a: 0
    return x


def _patch_feedback(x):
    from bncourse.exercises import feedback

    feedback.Feedback.__bool__ = lambda self: True
    Feedback.passed = True
    CodeExercise.check = lambda self, fn: Feedback(True, "hacked")
    return x


def _patch_the_exercise(x):
    ex = _patch_the_exercise.target
    ex.rtol = ex.atol = 1e9
    ex.expected[0][...] = x
    ex.check = lambda fn: Feedback(True, "hacked")
    return x


def _patch_torch(x):
    torch = pytest.importorskip("torch")
    torch.Tensor.numpy = lambda self, *a, **k: np.zeros(3)
    torch.allclose = lambda *a, **k: True
    return x


PATCHES = {"compare": _patch_compare, "numpy": _patch_numpy, "builtins": _patch_builtins,
           "feedback and methods": _patch_feedback, "the exercise": _patch_the_exercise, "torch": _patch_torch}


@pytest.mark.parametrize("name", list(PATCHES))
def test_patches_made_during_a_check_are_undone(name):
    pytest.importorskip("torch")
    import torch

    before = {"np.isclose": np.isclose, "np.isfinite": np.isfinite, "np.allclose": np.allclose,
              "isinstance": builtins.isinstance, "len": builtins.len, "compare": compare.compare,
              "ce.compare": code_exercise.compare, "check": CodeExercise.__dict__["check"],
              "bool": Feedback.__dict__["__bool__"], "numpy()": torch.Tensor.numpy, "allclose": torch.allclose}
    ex = exercise()
    _patch_the_exercise.target = ex
    fb = ex.check(PATCHES[name])  # returns its input unchanged: wrong
    after = {"np.isclose": np.isclose, "np.isfinite": np.isfinite, "np.allclose": np.allclose,
             "isinstance": builtins.isinstance, "len": builtins.len, "compare": compare.compare,
             "ce.compare": code_exercise.compare, "check": CodeExercise.__dict__["check"],
             "bool": Feedback.__dict__["__bool__"], "numpy()": torch.Tensor.numpy, "allclose": torch.allclose}
    assert after == before
    assert "passed" not in Feedback.__dict__ and "check" not in vars(ex) and ex.rtol == 1e-6
    assert not fb.passed and "wrong values at 6 of 6" in fb.message, fb.message  # undone before comparing
    later = ex.check(lambda x: x)
    assert not later.passed and "wrong values" in later.message
    assert ex.check(ref).passed


def test_snapshot_of_an_untouched_session_restores_nothing():
    snap = guard.Snapshot()
    exercise().check(ref)
    assert snap.restore() == []


def test_ordinary_library_calls_in_a_learner_function_are_not_undone():
    torch = pytest.importorskip("torch")

    def f(x):
        bn = torch.nn.BatchNorm1d(2)
        t = torch.from_numpy(x).float().requires_grad_()
        bn(t).sum().backward()
        np.testing.assert_allclose(1.0, 1.0)
        return ref(x)

    snap = guard.Snapshot()
    fb = exercise(timeout=30).check(f)
    assert fb.passed, fb.message
    assert snap.restore() == []


def test_a_librarys_own_import_time_patch_is_kept(monkeypatch):
    """E.g. torch.func imports torch._dynamo, which wraps torch.manual_seed: not the learner's doing."""
    import types

    original = np.isclose
    monkeypatch.setitem(guard._IMPORT_PATCHES, ("numpy", "isclose"), "bncourse_fake_importer")
    monkeypatch.delitem(sys.modules, "bncourse_fake_importer", raising=False)

    def f(x):
        sys.modules["bncourse_fake_importer"] = types.ModuleType("bncourse_fake_importer")
        np.isclose = lambda *a, **k: original(*a, **k)
        return ref(x)

    try:
        assert exercise().check(f).passed
        assert np.isclose is not original  # kept: the "library" changed it while being imported
    finally:
        np.isclose = original


# ----- time limits ----------------------------------------------------------------------------------------
def test_a_pure_python_loop_is_stopped_and_the_time_reported():
    def f(x):
        while True:
            pass

    fb = exercise().check(f)
    assert not fb.passed and "did not return within 0.5 s (the limit; abandoned after 0.5" in fb.message
    assert "still running" not in fb.message


def test_a_c_call_holding_the_gil_runs_to_its_end_and_is_reported_against_the_limit():
    pattern = re.compile(r"(a+)+b")  # catastrophic backtracking: one C call, holding the GIL, 2x per character

    def run(n: int) -> float:
        t0 = time.perf_counter()
        pattern.match("a" * n)
        return time.perf_counter() - t0

    n = 12
    while run(n) < 0.02:  # calibrate on this machine: n characters take at least 20 ms
        n += 1
    limit = 2 * run(n)
    fb = exercise(timeout=limit).check(lambda x: pattern.match("a" * (n + 3)))  # about 8x run(n): 4x the limit
    elapsed = float(re.search(r"took ([0-9.]+) s, over the", fb.message).group(1))
    assert elapsed > limit and not fb.passed
    assert "holds Python's interpreter lock" in fb.message and "runs to its end" in fb.message


def test_a_sleeping_thread_is_reported_as_still_running():
    fb = exercise(timeout=0.1).check(lambda x: time.sleep(1.0))
    assert "did not return within 0.1 s" in fb.message and "still running in the background" in fb.message


class _LoopingStr(Exception):
    def __str__(self):
        while True:
            pass


class _LoopingArray:
    def __array__(self, *args, **kwargs):
        while True:
            pass


class _LoopingEq:
    def __eq__(self, other):
        while True:
            pass

    __hash__ = None


def _looping_generator(x):
    while True:          # loops before its first yield: only iterating it runs this
        pass
    yield x


def _raise_looping_str(x):
    raise _LoopingStr()


def _diagnose_iterating(expected, got, case):
    return f"got {len(list(got))} items" if hasattr(got, "__next__") else None


def _diagnose_as_array(expected, got, case):
    return f"shape {np.asarray(got).shape}"


def _ref_label(x):
    return "standardized"


@pytest.mark.parametrize("fn, diagnose, reference", [
    (_raise_looping_str, None, ref),
    (lambda x: _LoopingArray(), _diagnose_as_array, ref),
    (lambda x: _LoopingEq(), None, _ref_label),
    (lambda x: (_LoopingEq(),), None, lambda x: ("standardized",)),
    (_looping_generator, _diagnose_iterating, ref),
], ids=["exception-__str__", "__array__-in-diagnose", "__eq__", "__eq__-in-a-tuple", "generator-in-diagnose"])
def test_the_time_limit_covers_what_examining_the_result_runs(fn, diagnose, reference):
    """Learner code run while the checker examines a result is under the time limit too."""
    started = time.perf_counter()
    fb = exercise(timeout=0.3, diagnose=diagnose, reference=reference).check(fn)
    assert time.perf_counter() - started < 3.0
    assert_safe(fb)
    assert not fb.passed and "did not finish within 0.3 s" in fb.message


class _Plain:
    def __init__(self, scale):
        self.scale = scale
        self.history = [np.arange(3.0)]


def _ref_plain(x, obj, rng):
    return x * obj.scale


def test_untouched_objects_are_not_reported_as_modified():
    """A plain object, a ``np.random.Generator`` and (below) an ``nn.Module`` compare by identity: the
    checker compares what they hold instead, and a correct function that never touched them passes."""
    ex = exercise(reference=_ref_plain, cases=[Case((np.arange(4.0), _Plain(2.0), np.random.default_rng(0)))])
    assert ex.check(lambda x, obj, rng: x * obj.scale).passed
    assert ex.check(lambda x, obj, rng: x * obj.scale + 0 * rng.standard_normal(4)).passed

    def modifies(x, obj, rng):
        obj.history[0][1] = 7.0
        return x * obj.scale

    fb = ex.check(modifies)
    assert not fb.passed and "modified its input `obj` in place" in fb.message


def test_untouched_module_is_not_reported_as_modified():
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(3, 2)

    def ref_module(x, m):
        with torch.no_grad():
            return m(torch.as_tensor(x, dtype=torch.float32)).numpy()

    ex = exercise(reference=ref_module, cases=[Case((np.ones((4, 3), np.float32), layer))], atol=1e-6)
    assert ex.check(ref_module).passed

    def trains(x, m):
        with torch.no_grad():
            m.weight.add_(1.0)
        return ref_module(x, m)

    fb = ex.check(trains)
    assert not fb.passed and "modified its input `m` in place" in fb.message

    def switches_to_eval(x, m):
        m.eval()
        return ref_module(x, m)

    assert "modified its input `m`" in ex.check(switches_to_eval).message


# ----- quizzes: grade() never raises ----------------------------------------------------------------------
def endless():
    while True:
        yield 0


WEIRD_ANSWERS = [Hostile(), HostileNumber(0.15), HostileList([0]), endless(), iter(range(10**9)), 10**400,
                 "x" * 10**6, "<script>alert(1)</script>", "$x$", b"0.15", object(), float("inf"), -10**30,
                 np.float32(0.15), np.array(0.15), np.array([0, 1]), complex(1, 1), {0: 1}, [Hostile()]]


@pytest.mark.parametrize("i", range(len(WEIRD_ANSWERS)))
def test_quiz_grade_never_raises(i):
    answer = WEIRD_ANSWERS[i]
    mc = MultipleChoice(id="r-mc", prompt="?", options=["a", "b"], answer=0)
    multi = MultipleChoice(id="r-multi", prompt="?", options=["a", "b", "c"], answer=[0, 1])
    num = Numeric(id="r-num", prompt="?", answer=0.15, tol=0.005, units="s")
    for q in (mc, multi, num):
        assert_safe(q.grade(answer))
    assert len(num.grade("x" * 10**6).message) < 400


# ----- the numeric grammar, on the shared list ------------------------------------------------------------
@pytest.mark.parametrize("case", ANSWERS["cases"], ids=lambda c: ascii(c["input"])[:40] + f"|{c['units']}")
def test_numeric_answer_grammar_in_python(case):
    q = ANSWERS["question"]
    question = Numeric(id="r-grammar", prompt="?", answer=q["answer"], tol=q["tol"], units=case["units"])
    key, detail = question.parse(case["input"])
    assert key == case["result"]
    if key == "ok":
        assert detail == case["value"] and math.copysign(1, detail) == math.copysign(1, case["value"])
    if key == "unit":
        assert detail == case["rest"]
    assert numeric_answer.verdict(case["input"], question.answer, question.slack, case["units"]) == case["verdict"]
    fb = question.grade(case["input"])
    assert fb.passed == (case["verdict"] == "right")
    assert_safe(fb)
    if "echo" in case:
        assert numeric_answer.echo(case["input"]) == case["echo"]
        if key in ("ok", "nan"):
            assert markup.literal(case["echo"]) in fb.message


def test_the_grammar_regexes_use_only_syntax_javascript_reads_alike():
    for name, source in numeric_answer.js_grammar().items():
        if isinstance(source, str):
            # no Python-only constructs: named groups, lookbehind, \A/\Z, inline flags, possessive/atomic
            assert not re.search(r"\(\?[P<=!#>aiLmsux]|\\[AZ]|[*+?]\+", source), (name, source)


# ----- markup: emphasis, strong, unknown markup ------------------------------------------------------------
@pytest.mark.parametrize("text, html_out", [
    ("What does *internal covariate shift* refer to?", "What does <em>internal covariate shift</em> refer to?"),
    ("**strong** and *em*", "<strong>strong</strong> and <em>em</em>"),
    ("**a *b* c**", "<strong>a <em>b</em> c</strong>"),
    ("*$x$ and `y`*", '<em><span class="math notranslate nohighlight">\\(x\\)</span> and <code>y</code></em>'),
    ("y = gamma * x + beta", "y = gamma * x + beta"),
    ("a literal \\*star\\*", "a literal *star*"),
    ("*<script>*", "<em>&lt;script&gt;</em>"),
    ("`a*b*c` and $a*b*c$", '<code>a*b*c</code> and <span class="math notranslate nohighlight">\\(a*b*c\\)</span>'),
])
def test_emphasis_and_strong(text, html_out):
    assert markup.to_html(text) == html_out


@pytest.mark.parametrize("text, error", [
    ("*never closed", "unmatched '*'"), ("**never closed", "unmatched '**'"),
    ("*a **b* c**", "nest them properly"), ("trailing *star*s and *", None),
])
def test_malformed_emphasis_is_rejected(text, error):
    if error is None:
        markup.parse(text)
        return
    with pytest.raises(markup.MarkupError, match=re.escape(error)):
        markup.parse(text)
    with pytest.raises(ValueError, match=re.escape(error)):
        MultipleChoice(id="r-bad", prompt=text, options=["a", "b"], answer=0)


def test_literal_escapes_asterisks_so_echoed_input_never_becomes_emphasis():
    typed = "2*3*4 **x** `y` $z$ \\"
    assert markup.parse(markup.literal(typed)) == [("text", typed)]
    fb = Numeric(id="r-echo", prompt="?", answer=1.0).grade(typed)
    assert "<em>" not in markup.to_html(fb.message) and "2*3*4 **x**" in html.unescape(markup.to_html(fb.message))


@pytest.mark.parametrize("text, found", [
    ("a [link](http://x) here", "a Markdown link"), ("use _this_ word", "underscore emphasis"),
    ("<b>bold</b>", "an HTML tag"), ("a &amp; b", "an HTML entity"), ("~~old~~", "strikethrough"),
    ("line\n# Heading", "a Markdown heading"), ("list:\n- item", "a Markdown list item"),
    ("\\(x\\)", "a TeX math delimiter"), ("the \\alpha value", "a TeX command outside math"),
    ("x ** 2", "opens no **strong**"),
])
def test_unknown_markup_is_reported(text, found):
    assert any(found in d for d in markup.unknown_markup(text)), markup.unknown_markup(text)


@pytest.mark.parametrize("text", ["running_mean and running_var", "*em* **strong** `a_b_` $x_i^2$", "a * b",
                                  "\\*\\* literal", "It's 50% of 2/3 <= 1", "$\\alpha$ in math"])
def test_known_markup_is_not_reported(text):
    assert markup.unknown_markup(text) == []


QUESTION_CLASSES = {"MultipleChoice", "Numeric", "CodeExercise"}
TEXT_ARGS = {"prompt", "options", "hint", "hints", "explanation", "feedback", "units"}


def book_question_texts() -> list[tuple[str, str]]:
    """(where, text) for every literal text argument of every question defined in the book's notebooks."""
    texts = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for n, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            # IPython's own translation of magics (``%pip`` -> a call), so a magic inside a block still parses
            tree = ast.parse(TransformerManager().transform_cell(source))  # a cell that does not parse fails here
            for node in ast.walk(tree):
                name = getattr(node, "func", None)
                name = getattr(name, "id", getattr(name, "attr", None))
                if not isinstance(node, ast.Call) or name not in QUESTION_CLASSES:
                    continue
                for kw in node.keywords:
                    if kw.arg not in TEXT_ARGS:
                        continue
                    values = kw.value.values if isinstance(kw.value, ast.Dict) else (
                        kw.value.elts if isinstance(kw.value, (ast.List, ast.Tuple)) else [kw.value])
                    for v in values:
                        if isinstance(v, ast.Constant) and isinstance(v.value, str):
                            texts.append((f"{path.name} cell {n} {kw.arg}", v.value))
                        elif isinstance(v, ast.JoinedStr):  # an f-string: check its literal parts
                            parts = [p.value for p in v.values if isinstance(p, ast.Constant)]
                            texts.append((f"{path.name} cell {n} {kw.arg} (f-string parts)", "".join(parts)))
    return texts


def test_the_book_questions_use_only_markup_the_renderer_knows():
    texts = book_question_texts()
    assert len(texts) > 50  # the scan found the questions
    problems = []
    for where, text in texts:
        try:
            found = markup.unknown_markup(text)
        except markup.MarkupError as exc:
            found = [str(exc)]
        problems += [f"{where}: {d}" for d in found]
    assert not problems, "\n".join(problems)
    emphasised = [t for _, t in texts if "<em>" in markup.to_html(t)]
    assert emphasised, "the book's questions use *emphasis*; the scan should see it rendered"


# ----- the package's structure ----------------------------------------------------------------------------
def test_exercises_imports_have_no_cycle():
    pkg = ROOT / "bncourse" / "exercises"
    graph: dict[str, set[str]] = {}
    for path in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = deps - {"__init__"}
    graph.pop("__init__")  # the package imports its modules; the modules never import the package
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        if state.get(m) == 1:
            pytest.fail("import cycle: " + " -> ".join(trail + [m]))
        if state.get(m) == 2 or m not in graph:
            return
        state[m] = 1
        for d in sorted(graph[m]):
            visit(d, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    assert "static_html" not in graph["question"] and "live_widgets" not in graph["question"]


def test_renderers_are_registered_per_question_class():
    assert {MultipleChoice, Numeric, CodeExercise} <= set(renderers.STATIC)
    assert {MultipleChoice, Numeric, CodeExercise} <= set(renderers.LIVE)
    assert not hasattr(exercises.Question, "kind")
    assert compare.is_tensor(np.zeros(1)) is False

    class Other(exercises.Question):
        pass

    q = Other(id="r-other", prompt="p")
    with pytest.raises(TypeError, match="no static rendering for Other"):
        q.to_html()
    assert render(Numeric(id="r-n", prompt="p", answer=1.0)).startswith('<div class="bnc-quiz bnc-numeric"')
