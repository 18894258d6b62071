"""bncourse.claims: the criteria compute what they say, strict mode raises with every number, a learner's run
never stops and shows the box, and glued values follow myst-nb's protocol."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from scipy import stats

from bncourse import claims

A = [0.70, 0.72, 0.75, 0.71, 0.60]
B = [0.531, 0.540, 0.514, 0.539, 0.549]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    claims.reset()
    monkeypatch.delenv(claims.STRICT_ENV, raising=False)
    yield
    claims.reset()


def _lower(diff):
    diff = np.asarray(diff, float)
    return diff.mean() - stats.t.ppf(0.95, diff.size - 1) * diff.std(ddof=1) / math.sqrt(diff.size)


def test_greater_is_the_one_sided_t_bound_of_the_paired_mean():
    lower = _lower(np.subtract(A, B))
    assert 0.09 < lower < 0.11
    assert claims.greater("k", "a beats b", A, B, by=lower - 1e-9, show=False).held
    assert not claims.greater("k", "a beats b", A, B, by=lower + 1e-9, show=False).held
    # paired, not two samples: a shift shared by both sides changes nothing
    c = claims.greater("k", "a beats b", np.add(A, 5), np.add(B, 5), by=0.05, show=False)
    assert c.held and c.extra["lower"] == pytest.approx(lower)


def test_less_mirrors_greater():
    assert claims.less("k", "b below a", B, A, by=0.09, show=False).held
    assert not claims.less("k", "b below a", B, A, by=0.11, show=False).held


def test_one_sample_against_a_number():
    c = claims.greater("k", "above chance", [0.5, 0.52, 0.55], 0.1, by=0.3, show=False)
    assert c.held and c.extra["lower"] == pytest.approx(_lower(np.subtract([0.5, 0.52, 0.55], 0.1)))


def test_ratio_is_on_logs():
    a, b = [3.0, 4.0, 5.0, 4.5], [1.0, 1.0, 1.2, 1.1]
    lower = math.exp(_lower(np.log(a) - np.log(b)))
    assert claims.ratio_greater("k", "a is 2x b", a, b, factor=lower * 0.999, show=False).held
    assert not claims.ratio_greater("k", "a is 2x b", a, b, factor=lower * 1.001, show=False).held
    with pytest.raises(ValueError, match="positive"):
        claims.ratio_greater("k", "x", [1.0, -1.0], [1.0, 1.0], factor=1, show=False)


def test_close_to_uses_the_two_sided_interval():
    values = [0.70, 0.71, 0.72, 0.705]
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    mean = np.mean(values)
    tol = abs(mean - 0.7071) + half
    assert claims.close_to("k", "1/sqrt 2", values, target=0.7071, tol=tol * 1.001, show=False).held
    assert not claims.close_to("k", "1/sqrt 2", values, target=0.7071, tol=tol * 0.999, show=False).held


def test_each_and_each_true_are_per_run():
    assert claims.each("k", "trains", [0.7, 0.8], above=0.3, show=False).held
    assert not claims.each("k", "trains", [0.7, 0.2], above=0.3, show=False).held
    assert not claims.each("k", "trains", [0.7, float("nan")], above=0.3, show=False).held
    assert claims.each("k", "in range", [2.0, 3.0], above=1, below=4, show=False).held
    assert claims.each_true("k", "diverges", [True, True], show=False).held
    assert not claims.each_true("k", "diverges", [True, False], show=False).held
    with pytest.raises(ValueError, match="above"):
        claims.each("k", "x", [1.0])


def test_bound_and_observe():
    assert claims.bound("k", "parity", [1e-7, 3e-7], 4e-7, why="u·n", show=False).held
    assert not claims.bound("k", "parity", [1e-7, 5e-7], 4e-7, why="u·n", show=False).held
    obs = claims.observe("k", "eval vs train", [1, 2, 3], [1.5, 1.5, 1.5], show=False)
    assert obs.held is None and not obs.asserted and "includes 0" in obs.result


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 runs"):
        claims.greater("k", "x", [1.0], [0.0], show=False)
    with pytest.raises(ValueError, match="equal lengths"):
        claims.greater("k", "x", [1.0, 2.0], [0.0], show=False)
    with pytest.raises(ValueError, match="no values"):
        claims.each("k", "x", [], above=0)


def test_strict_mode_raises_with_every_number(monkeypatch):
    monkeypatch.setenv(claims.STRICT_ENV, "1")
    with pytest.raises(claims.ClaimMissed) as info:
        claims.greater("rnn", "per-step BN beats LayerNorm", B, A, labels=["per-step", "LN"], seeds=range(5),
                       show=False)
    text = str(info.value)
    assert "per-step BN beats LayerNorm" in text and "lower end" in text and "missed" in text
    assert "0.531" in text and "0.75" in text and "seeds: 0, 1, 2, 3, 4" in text
    assert isinstance(info.value, AssertionError)
    claims.observe("o", "not claimed", B, A, show=False)           # an observation never raises
    monkeypatch.setenv(claims.STRICT_ENV, "0")
    assert not claims.greater("rnn", "x", B, A, show=False).held   # "0" is off


def test_seeds_follow_the_offset(monkeypatch):
    monkeypatch.setenv("BNCOURSE_SEED_OFFSET", "101")
    assert claims.greater("k", "x", A, B, seeds=range(5), show=False).seeds == [101, 102, 103, 104, 105]


def test_ledger_keeps_one_row_per_key_in_order():
    claims.greater("a", "first", A, B, show=False)
    claims.each("b", "second", A, above=0, show=False)
    claims.greater("a", "first, re-run", A, B, show=False)
    assert [c.key for c in claims.recorded()] == ["b", "a"]
    html = claims.ledger(show=False)._repr_html_()
    assert "first, re-run" in html and "second" in html and html.count("<tr>") == 3


def test_box_escapes_and_explains_a_miss():
    c = claims.greater("k", "<b>bold</b> claim", B, A, show=False)
    box = c._repr_html_()
    assert "&lt;b&gt;bold" in box and "<b>bold" not in box
    assert "missed" in box and "does not mean that your setup is broken" in box
    assert "does not mean" not in claims.greater("k", "x", A, B, show=False)._repr_html_()


def test_text_helpers():
    assert claims.span([0.321, 0.389]) == "0.32–0.39"
    assert claims.span([0.321, 0.324]) == "0.32"
    assert claims.mean_sd([1, 2, 3]) == "2.000 ± 1.000"


def test_glue_matches_myst_nb():
    pytest.importorskip("myst_nb")
    from IPython.core.interactiveshell import InteractiveShell
    from myst_nb import glue as myst_glue

    shell = InteractiveShell.instance()
    seen = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: seen.append((data, metadata))
    try:
        for value in (0.25, "0.32–0.39"):
            myst_glue("x", value, display=False)
            claims.glue("x", value)
        claims.glue("y", np.float64(0.5))
    finally:
        del shell.display_pub.publish
    assert seen[0] == (seen[1][0], seen[1][1])
    assert seen[3][0]["application/papermill.record/text/plain"] == "0.32–0.39"   # no quotes
    assert seen[4][0]["application/papermill.record/text/plain"] == "0.5"          # a number, not np.float64(…)


def _run_notebook(source: str, strict: bool):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source),
                                         nbformat.v4.new_code_cell("print('after the claim')")])
    env_before = os.environ.get(claims.STRICT_ENV)
    os.environ[claims.STRICT_ENV] = "1" if strict else "0"
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        if env_before is None:
            del os.environ[claims.STRICT_ENV]
        else:
            os.environ[claims.STRICT_ENV] = env_before
    return nb


MISSING = ("from bncourse import claims\n"
           "claims.greater('k', 'a beats b', [0.5, 0.52, 0.49], [0.6, 0.61, 0.58], labels=['a', 'b'])\n"
           "claims.ledger()")


def test_a_learners_run_completes_and_shows_the_box():
    nb = _run_notebook(MISSING, strict=False)
    html = "".join(o.get("data", {}).get("text/html", "") for o in nb.cells[0].outputs)
    assert "bncourse-claim" in html and "missed" in html and "bncourse-ledger" in html
    assert any("after the claim" in o.get("text", "") for o in nb.cells[1].outputs)


def test_strict_run_stops_at_the_missed_claim():
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="ClaimMissed"):
        _run_notebook(MISSING, strict=True)


@pytest.mark.parametrize("env, expected", [({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}, "DEFAULT"),
                                           ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                                            "AVX2")])
def test_other_cpus_can_be_simulated(env, expected):
    """The settings the notebook pass and `make slow` use do reach torch (set before it starts)."""
    import torch

    if expected == "AVX2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2")
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout.strip()
    assert out == expected
