"""Browser test of the built website (``_build/html``): every page in headless Chromium, fully offline.

For every page: no request leaves 127.0.0.1, no HTTP error, no console error or uncaught exception, math is
typeset by the vendored MathJax (no raw ``$...$``, ``\\(`` or ``\\[`` left in the visible text), every image
loads. On the self-check demo page, the static quizzes are clicked: right and wrong answers get the right
feedback, computed in the browser with no kernel.

The quiz script's number grammar is also tested on its own, on a small local page of rendered quizzes (no
book build needed), against the shared list of inputs ``tests/data/numeric_answers.json`` that the Python
grader is tested on in ``test_exercises_robustness.py``: both must read every input alike.

Needs the built site (``make book``) and Debian's ``chromium`` (driven by Playwright, never downloaded).
Skipped when either is missing, unless ``BNCOURSE_REQUIRE_SITE=1`` (``make site-test``), which makes that a
failure. The grammar test needs only Chromium and Playwright.
"""
from __future__ import annotations

import functools
import html as html_lib
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("BNCOURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REQUIRE = os.environ.get("BNCOURSE_REQUIRE_SITE") == "1"
DEMO = "book/self_check_demo.html"


def _unavailable(need_site: bool = True) -> str | None:
    if need_site and not (SITE / "index.html").is_file():
        return f"no built site at {SITE} (run `make book`)"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (scripts/setup_system.sh installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed"
    return None


def pages() -> list[str]:
    if not SITE.is_dir():
        return [DEMO]
    found = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                   if not p.relative_to(SITE).parts[0].startswith("_"))
    return found or [DEMO]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def server():
    reason = _unavailable()
    if reason:
        if REQUIRE:
            pytest.fail(f"BNCOURSE_REQUIRE_SITE=1 but {reason}")
        pytest.skip(reason)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def chromium():
    reason = _unavailable(need_site=False)
    if reason:
        if REQUIRE:
            pytest.fail(f"BNCOURSE_REQUIRE_SITE=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser(server, chromium):
    return chromium


class PageLog:
    """Everything a page did that the test asserts on."""

    def __init__(self, page, base: str) -> None:
        self.base_host = urlparse(base).hostname
        self.foreign: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _request(self, request) -> None:
        url = urlparse(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.hostname != self.base_host:
            self.foreign.append(request.url)


def open_page(browser, server: str, rel: str):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    log = PageLog(page, server)
    page.goto(f"{server}/{rel}", wait_until="load")
    page.wait_for_load_state("networkidle")
    # wait for MathJax (vendored, deferred) to finish its first typesetting pass
    page.evaluate("""async () => {
        for (let i = 0; i < 200 && window.MathJax && !(MathJax.startup && MathJax.startup.promise); i++)
            await new Promise(r => setTimeout(r, 50));
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    }""")
    return page, log


VISIBLE_TEXT_JS = """(selector) => {
    const skip = 'pre, code, script, style, textarea, mjx-container, mjx-assistive-mml, .highlight, kbd, samp';
    const out = [];
    const roots = selector ? Array.from(document.querySelectorAll(selector)) : [document.body];
    for (const root of roots) {
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const el = n.parentElement;
            if (!el || el.closest(skip)) continue;
            if (el.checkVisibility && !el.checkVisibility()) continue;
            out.push(n.textContent);
        }
    }
    return out.join(' ');
}"""
# *emphasis* or **strong** left as asterisks in visible text
LITERAL_STARS = re.compile(r"(?<![\w*])\*{1,2}[^\s*][^*\n]*\*{1,2}")


IMAGES_JS = """async () => {
    const imgs = Array.from(document.images);
    for (const img of imgs) { img.loading = 'eager'; }
    await Promise.all(imgs.map(img => img.decode().catch(() => null)));
    return imgs.map(img => ({src: img.currentSrc || img.src, w: img.naturalWidth, alt: img.getAttribute('alt')}));
}"""


@pytest.mark.parametrize("rel", pages())
def test_page_is_offline_typeset_and_clean(browser, server, rel):
    page, log = open_page(browser, server, rel)
    try:
        html = page.content()
        has_math = 'class="math' in html or "\\(" in html
        n_typeset = page.locator("mjx-container").count()
        text = page.evaluate(VISIBLE_TEXT_JS, None)
        quiz_text = page.evaluate(VISIBLE_TEXT_JS, ".bnc-quiz")
        images = page.evaluate(IMAGES_JS)
    finally:
        page.close()
    assert not log.foreign, f"{rel}: requests to other hosts: {log.foreign[:5]}"
    assert not log.failed, f"{rel}: failed requests: {log.failed[:5]}"
    assert not log.errors, f"{rel}: {log.errors[:5]}"
    if has_math and rel not in ("search.html", "genindex.html", "py-modindex.html"):
        assert n_typeset > 0, f"{rel}: the page has math but MathJax typeset none of it"
    raw = re.findall(r"\\\(|\\\[|\\begin\{|\$[^$\s][^$]*\$", text)
    assert not raw, f"{rel}: untypeset math in the visible text: {raw[:5]}"
    # the quiz markup's *emphasis* and **strong** are rendered, never shown as asterisks
    stars = LITERAL_STARS.findall(quiz_text)
    assert not stars, f"{rel}: quiz text shows markup literally: {stars[:5]}"
    broken = [i["src"] for i in images if not i["w"]]
    assert not broken, f"{rel}: images that did not load: {broken}"
    if re.match(r"book/ch\d", rel):
        # every chapter draws figures from its experiments; none means the kernel lost inline plotting
        # (e.g. MPLBACKEND=Agg exported to the kernels) and the chapter was published without them
        figures = [i for i in images if "/_images/" in i["src"] or i["src"].startswith("data:image")]
        assert len(figures) >= 2, f"{rel}: expected the chapter's figures, found {len(figures)} images"
        # each figure is described in words (bncourse.setup_chapter): not its file name
        unnamed = [i["src"] for i in figures if not (i["alt"] or "").strip() or re.search(r"\.(png|svg|jpe?g)$", i["alt"])]
        assert not unnamed, f"{rel}: figures without alt text: {unnamed[:3]}"


def _feedback(quiz):
    fb = quiz.locator(".bnc-feedback")
    return fb.get_attribute("data-bnc-result"), fb.inner_text()


def test_static_quizzes_check_answers_in_the_browser(browser, server):
    page, log = open_page(browser, server, DEMO)
    try:
        assert page.locator(".bnc-quiz").count() >= 4, "the demo page should show every kind of question"
        assert page.locator("script[type='application/vnd.jupyter.widget-view+json']").count() == 0, \
            "the website should render questions as static quizzes, not frozen widget snapshots"

        single = page.locator(".bnc-quiz[data-bnc-id='demo-minmax']")
        single.locator("input[value='1']").check()
        single.locator("button.bnc-check").click()
        result, text = _feedback(single)
        assert result == "wrong" and "is not the right answer" in text and "standardization" in text, text
        assert "Hint" in text
        single.locator("input[value='0']").check()
        single.locator("button.bnc-check").click()
        result, text = _feedback(single)
        assert result == "right" and text.startswith("Correct!") and "largest to 1" in text, text

        multi = page.locator(".bnc-quiz[data-bnc-id='demo-bn-state']")
        assert multi.locator(".bnc-prompt em").count() > 0, "the prompt's *buffers* should be emphasised"
        multi.locator("button.bnc-check").click()
        assert _feedback(multi)[1].startswith("No option ticked")
        for i in (0, 1):
            multi.locator(f"input[value='{i}']").check()
        multi.locator("button.bnc-check").click()
        result, text = _feedback(multi)
        assert result == "wrong" and "should not be ticked" in text and "1 of the 3 right options" in text, text
        shown_math = multi.locator(".bnc-feedback [data-bnc-msg]:not([hidden]) mjx-container")
        assert shown_math.count() > 0, "math in the feedback (the hint) should be typeset"
        multi.locator("input[value='1']").uncheck()
        for i in (2, 3):
            multi.locator(f"input[value='{i}']").check()
        multi.locator("button.bnc-check").click()
        result, text = _feedback(multi)
        assert result == "right" and text.startswith("Correct! All 3 right options"), text

        num = page.locator(".bnc-quiz[data-bnc-id='demo-epoch-time']")
        box = num.locator("input.bnc-number")
        for typed, want, snippet in [("150", "wrong", "150 is too high"), ("0.1", "wrong", "0.1 is too low"),
                                     ("150 ms", "wrong", "Give the answer in s: “ms”"),
                                     ("0,15", "wrong", "“0,15” is not a number"),
                                     ("0.15 s", "right", "Correct: 0.15 s is within ±0.005 s"),
                                     ("3/20", "right", "Correct: 3/20 is within")]:
            box.fill(typed)
            num.locator("button.bnc-check").click()
            result, text = _feedback(num)
            assert result == want and snippet in text, (typed, text)
        # the learner's input is echoed as text, never as markup
        box.fill('<img src=x onerror="window.pwned=1">')
        num.locator("button.bnc-check").click()
        result, text = _feedback(num)
        assert result == "wrong" and "<img src=x" in text
        assert num.locator(".bnc-feedback img").count() == 0
        assert page.evaluate("() => window.pwned === undefined")

        code = page.locator(".bnc-quiz[data-bnc-id='demo-standardize']")
        assert "standardize" in code.locator(".bnc-title").inner_text()
        solution = code.locator("details", has_text="Solution")
        assert not solution.locator("pre").is_visible()
        solution.locator("summary").click()
        assert "def standardize" in solution.locator("pre").inner_text()
    finally:
        page.close()
    assert not log.foreign and not log.failed and not log.errors, (log.foreign, log.failed, log.errors)


# ----- the quiz script's number grammar, on the shared list of inputs ---------------------------------------
ANSWERS = json.loads((ROOT / "tests" / "data" / "numeric_answers.json").read_text(encoding="utf-8"))

PARSE_ALL_JS = """([cases, id]) => {
    const data = JSON.parse(document.querySelector(`[data-bnc-id='${id}'] script.bnc-data`).textContent);
    return cases.map(c => {
        const p = bncourseParseAnswer(c.input, data.units, data.grammar);
        return {result: p[0], value: p[0] === 'ok' ? p[1] : null, negative_zero: Object.is(p[1], -0),
                rest: p[0] === 'unit' ? p[1] : null, echo: p[2],
                verdict: bncourseVerdict(c.input, data.answer, data.slack, data.units, data.grammar)};
    });
}"""


def _text_of(markup_text: str) -> str:
    """The visible text of a feedback message as the page shows it (tags dropped, spaces collapsed)."""
    from bncourse.exercises import markup

    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", markup.to_html(markup_text))).split())


def test_quiz_script_reads_numbers_exactly_like_the_python_grader(chromium, tmp_path):
    from bncourse.exercises import MultipleChoice, Numeric, registry
    from bncourse.exercises.static_html import render

    q = ANSWERS["question"]
    quizzes = {}
    for units in ("s", None):
        registry.forget(f"grammar-{units}")
        quizzes[units] = Numeric(id=f"grammar-{units}", prompt="How long?", answer=q["answer"], tol=q["tol"],
                                 units=units)
    registry.forget("grammar-em")
    emphasis = MultipleChoice(id="grammar-em", prompt="What does *internal covariate shift* mean, **exactly**?",
                              options=["the *input* of a layer shifts", "`a*b*c` stays code"], answer=0)
    page_file = tmp_path / "grammar.html"
    page_file.write_text("<!doctype html><html><head><meta charset='utf-8'></head><body>"
                         + "".join(render(x) for x in [*quizzes.values(), emphasis]) + "</body></html>",
                         encoding="utf-8")
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        mismatches = []
        for units, question in quizzes.items():
            cases = [c for c in ANSWERS["cases"] if c["units"] == units]
            got = page.evaluate(PARSE_ALL_JS, [cases, question.id])
            for case, js in zip(cases, got):
                want = {"result": case["result"], "value": case.get("value"), "rest": case.get("rest"),
                        "verdict": case["verdict"]}
                seen = {k: js[k] for k in want}
                negative_zero = case["result"] == "ok" and case["value"] == 0 and str(case["value"]).startswith("-")
                if seen != want or js["negative_zero"] != negative_zero:
                    mismatches.append((case["input"], units, want, js))
                if "echo" in case and js["echo"] != case["echo"]:
                    mismatches.append((case["input"], units, "echo", case["echo"], js["echo"]))
            # through the page itself: type, press Check, and read the same message the Python grader writes
            quiz = page.locator(f".bnc-quiz[data-bnc-id='{question.id}']")
            box, check = quiz.locator("input.bnc-number"), quiz.locator("button.bnc-check")
            # (a browser's text box itself changes typed or pasted line breaks before any script sees them;
            # the parser's handling of them is tested above)
            for case in [c for c in cases if not re.search(r"[\r\n]", c["input"])]:
                box.fill(case["input"])
                check.click()
                fb = quiz.locator(".bnc-feedback")
                shown = " ".join(fb.inner_text().split())
                expected = question.grade(case["input"])
                result = fb.get_attribute("data-bnc-result")
                if result != ("right" if expected.passed else "wrong") or shown != _text_of(expected.message):
                    mismatches.append((case["input"], units, "page", shown, _text_of(expected.message)))
        assert not mismatches, "\n".join(map(repr, mismatches[:10]))
        em = page.locator(".bnc-quiz[data-bnc-id='grammar-em']")
        assert em.locator(".bnc-prompt em").inner_text() == "internal covariate shift"
        assert em.locator(".bnc-prompt strong").inner_text() == "exactly"
        assert em.locator(".bnc-options em").inner_text() == "input"
        quiz_text = page.evaluate(VISIBLE_TEXT_JS, ".bnc-quiz")
        assert "internal covariate shift" in quiz_text and not LITERAL_STARS.findall(quiz_text)
        assert LITERAL_STARS.findall("a *literal* b")  # the check itself sees asterisks
        assert not errors, errors
    finally:
        page.close()


# ----- the explorers, driven through their test interfaces ----------------------------------------------------
CH4, CH8, INTRO = "book/ch4_batchnorm_algorithm.html", "book/ch8_beyond_batchnorm.html", "book/intro.html"
BN_CONTROLS = ["batch_size", "momentum", "gamma", "beta", "eps", "shift", "scale", "steps"]

SET_JS = """([root, name, value]) => {
    const input = document.querySelector(`[${root}] [name='${name}']`);
    input.value = String(value);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    return JSON.parse(document.querySelector(`[${root}]`).getAttribute('data-state'));
}"""


def _state(page, root: str) -> dict:
    return json.loads(page.locator(f"[{root}]").get_attribute("data-state"))


def _numpy_bn(page, state: dict):
    """The batches the page drew for ``state`` (the module's seeded generator), through bncourse.numpy."""
    import numpy as np

    from bncourse.numpy import BatchNorm

    sim = page.evaluate("async (p) => (await import('../_static/bn_explorer.js')).simulate(p)",
                        {k: state[k] for k in BN_CONTROLS})
    bn = BatchNorm(1, eps=state["eps"], momentum=state["momentum"], dtype=np.float64)
    bn.weight[:], bn.bias[:] = state["gamma"], state["beta"]
    for x in sim["batches"]:
        y = bn(np.array(x)[:, None])[:, 0]
    bn.eval()
    y_eval = bn(np.array(sim["eval_in"])[:, None])[:, 0]
    return bn, y, y_eval


def test_bn_explorer_runs_on_the_page_like_bncourse_numpy(browser, server):
    import numpy as np

    if not (SITE / CH4).is_file():
        pytest.skip(f"no {CH4} in the built site")
    context = browser.new_context()
    page = context.new_page()
    log = PageLog(page, server)
    try:
        page.goto(f"{server}/{CH4}", wait_until="load")
        root = page.locator("[data-bn-explorer]")
        root.locator("svg").first.wait_for()
        assert root.count() == 1
        for name in BN_CONTROLS:
            control = root.locator(f"input[type='range'][name='{name}']")
            assert control.count() == 1, name
            label = root.locator(f"label[for='{control.get_attribute('id')}']")
            assert label.count() == 1 and label.inner_text().strip(), f"{name} has no label"
        state = initial = _state(page, "data-bn-explorer")
        assert {k: state[k] for k in BN_CONTROLS} == {"batch_size": 8, "momentum": 0.1, "gamma": 1, "beta": 0,
                                                      "eps": 1e-5, "shift": 3, "scale": 2, "steps": 30}
        for name, value in [("batch_size", 2), ("gamma", -2), ("beta", 1), ("eps", -8), ("steps", 3)]:
            state = page.evaluate(SET_JS, ["data-bn-explorer", name, value])
        assert state["batch_size"] == 2 and state["eps"] == 1e-8 and state["steps"] == 3
        # a batch of 2: every training output is beta +- |gamma|
        assert abs(state["train_out_mean"] - 1) < 1e-9 and abs(state["train_out_std"] - 2) < 1e-6, state
        bn, y, y_eval = _numpy_bn(page, state)
        np.testing.assert_allclose(sorted(y), [-1, 3], atol=1e-6)
        for key, want in [("running_mean", bn.running_mean[0]), ("running_var", bn.running_var[0]),
                          ("train_out_mean", y.mean()), ("train_out_std", y.std()),
                          ("eval_out_mean", y_eval.mean()), ("eval_out_std", y_eval.std())]:
            np.testing.assert_allclose(state[key], want, rtol=1e-12, atol=1e-12, err_msg=key)
        # few steps: the running statistics are still near (0, 1), far from the input's (3, 4): a train/eval gap
        assert abs(state["eval_out_mean"] - state["beta"]) > 1
        before = page.locator("[data-bn-explorer] svg").first.inner_html()
        # keyboard: Tab reaches the sliders, arrows move them, the focus is visible
        root.locator("input[name='scale']").focus()
        page.keyboard.press("Tab")
        slider = root.locator("input[name='steps']")
        assert slider.evaluate("e => e === document.activeElement")
        page.keyboard.press("ArrowRight")
        assert _state(page, "data-bn-explorer")["steps"] == 4
        outline = slider.evaluate("e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth")
        assert not outline.startswith("none") and not outline.endswith(" 0px"), outline
        assert page.locator("[data-bn-explorer] svg").first.inner_html() != before
        # a reload draws the same batches: the same picture as the first visit
        page.reload(wait_until="load")
        root.locator("svg").first.wait_for()
        assert _state(page, "data-bn-explorer") == initial
    finally:
        context.close()
    assert not log.foreign and not log.failed and not log.errors, (log.foreign, log.failed, log.errors)


def test_norm_axes_picker_agrees_with_beyond(browser, server):
    from bncourse import beyond

    if not (SITE / CH8).is_file():
        pytest.skip(f"no {CH8} in the built site")
    page, log = open_page(browser, server, CH8)
    try:
        root = page.locator("[data-norm-axes]")
        root.locator("svg").wait_for()
        assert root.locator("select[name='kind']").count() == 1
        assert root.locator("input[type='range'][name='groups']").count() == 1
        for kind in ("bn", "ln", "in", "gn"):
            root.locator("select[name='kind']").select_option(kind)
            for groups in (1, 2, 4):
                state = page.evaluate(SET_JS, ["data-norm-axes", "groups", groups])
                n, c, h, w = state["shape"]
                assert state["kind"] == kind and state["groups"] == groups
                mask = beyond.shared_statistics_mask(kind, n, c, groups=groups)
                assert state["shared_with_first"] == mask.sum() * h * w, state
                assert state["values_per_statistic"] == beyond.values_per_statistic(kind, state["shape"],
                                                                                    groups=groups)
                lit = root.locator("rect.bna-on").count()
                assert lit == state["shared_with_chosen"], (lit, state)
        state = page.evaluate(SET_JS, ["data-norm-axes", "groups", 3])   # 3 does not divide C = 4: snapped
        assert state["shape"][1] % state["groups"] == 0
        # keyboard: the select changes with the arrow keys
        root.locator("select[name='kind']").focus()
        page.keyboard.press("Home")
        assert _state(page, "data-norm-axes")["kind"] == "bn"
    finally:
        page.close()
    assert not log.foreign and not log.failed and not log.errors, (log.foreign, log.failed, log.errors)


# ----- progress: answers kept in this browser, counted on the landing page ----------------------------------
def test_quiz_progress_survives_a_reload_and_is_counted(browser, server):
    context = browser.new_context()
    page = context.new_page()
    log = PageLog(page, server)
    sent: list[str] = []
    page.on("request", lambda r: r.method != "GET" and sent.append(f"{r.method} {r.url}"))
    try:
        page.goto(f"{server}/{DEMO}", wait_until="load")
        single = page.locator(".bnc-quiz[data-bnc-id='demo-minmax']")
        single.locator("input[value='0']").check()
        single.locator("button.bnc-check").click()
        assert _feedback(single)[0] == "right"
        num = page.locator(".bnc-quiz[data-bnc-id='demo-epoch-time']")
        num.locator("input.bnc-number").fill("150")
        num.locator("button.bnc-check").click()
        assert _feedback(num)[0] == "wrong"

        page.reload(wait_until="load")
        single = page.locator(".bnc-quiz[data-bnc-id='demo-minmax']")
        assert single.locator("input[value='0']").is_checked()
        assert _feedback(single)[0] == "right" and single.locator(".bnc-feedback").is_visible()
        num = page.locator(".bnc-quiz[data-bnc-id='demo-epoch-time']")
        assert num.locator("input.bnc-number").input_value() == "150" and _feedback(num)[0] == "wrong"

        page.goto(f"{server}/{INTRO}", wait_until="load")
        progress = page.locator("[data-bnc-progress]")
        progress.locator("table").wait_for()
        row = progress.locator("tr[data-bnc-page$='/book/self_check_demo.html']")
        assert row.get_attribute("data-bnc-done") == "1" and row.get_attribute("data-bnc-total") == "3"
        assert "1 of 3" in row.inner_text()
        # one row per page with self-checks, each with the number of its quizzes
        with_quizzes = {}
        for f in SITE.rglob("*.html"):
            n = len(set(re.findall(r'class="bnc-quiz bnc-(?:mc|numeric)"[^>]*data-bnc-id="([^"]+)"',
                                   f.read_text(encoding="utf-8"))))
            if n:
                with_quizzes["/" + f.relative_to(SITE).as_posix()] = str(n)
        rows = progress.locator("tbody tr")
        shown = {rows.nth(i).get_attribute("data-bnc-page"): rows.nth(i).get_attribute("data-bnc-total")
                 for i in range(rows.count())}
        assert shown == with_quizzes
        progress.locator("button.bnc-progress-reset").click()
        assert progress.get_attribute("data-bnc-done") == "0"
        page.goto(f"{server}/{DEMO}", wait_until="load")
        single = page.locator(".bnc-quiz[data-bnc-id='demo-minmax']")
        assert not single.locator("input[value='0']").is_checked()
        assert single.locator(".bnc-feedback").is_hidden()
    finally:
        context.close()
    assert not sent, f"progress must not be sent anywhere: {sent}"
    assert not log.foreign and not log.failed and not log.errors, (log.foreign, log.failed, log.errors)


# ----- accessibility: axe-core on every page, light and dark -------------------------------------------------
AXE = ROOT / "tests" / "_vendor" / "axe-core" / "axe.min.js"
AXE_RUN_JS = """async () => {
    const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                                       resultTypes: ['violations']});
    return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
        id: v.id, impact: v.impact, count: v.nodes.length,
        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' -- ' + (n.failureSummary || '').slice(0, 300))}));
}"""


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("rel", pages())
def test_page_has_no_serious_accessibility_violations(browser, server, rel, theme):
    if not AXE.is_file():
        msg = f"axe-core is not vendored at {AXE} (run scripts/vendor_assets.py)"
        if REQUIRE:
            pytest.fail(msg)
        pytest.skip(msg)
    context = browser.new_context()
    # the theme's colour-mode switch keeps the reader's choice in localStorage "mode"
    context.add_init_script(f"try {{ localStorage.setItem('mode', '{theme}'); }} catch (e) {{}}")
    page = context.new_page()
    try:
        page.set_default_timeout(60_000)
        page.goto(f"{server}/{rel}", wait_until="load")
        page.wait_for_load_state("networkidle")
        page.evaluate("""async () => {
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise; }""")
        assert page.evaluate("() => document.documentElement.dataset.theme") == theme
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(AXE_RUN_JS)
    finally:
        context.close()
    assert not violations, f"{rel} ({theme}): " + json.dumps(violations, indent=1, ensure_ascii=False)
