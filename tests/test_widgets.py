"""The explorers of ``bncourse.widgets``: their JavaScript math against the package, and their two renderings.

The BN explorer's module (``bncourse/web/bn_explorer.js``) is run in Node on a table of settings; the batches it
generated are fed to ``bncourse.numpy.BatchNorm`` (float64, torch's rules), and every running statistic, the
last training output, the evaluation outputs and the summary the page shows must agree. The axes picker's rule
(``norm_axes.js``) is compared with ``bncourse.beyond.shared_statistics_mask`` and ``values_per_statistic``.

Needs ``node`` (Debian's ``nodejs``, installed with ``npm`` by scripts/setup_system.sh); skipped without it
unless ``BNCOURSE_REQUIRE_SITE=1``. The browser test of the same modules on the built site is in test_site.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bncourse import beyond, widgets
from bncourse.numpy import BatchNorm

WEB = Path(widgets.__file__).with_name("web")
NODE = shutil.which("node")
U = 2.0 ** -53  # float64 unit roundoff

BN_CASES = [
    {},                                                   # the defaults the chapter shows
    {"batch_size": 2, "steps": 5},                        # batch of 2: outputs +-1
    {"batch_size": 2, "steps": 1, "eps": 1e-8, "gamma": -2.5, "beta": 1.5},
    {"batch_size": 64, "momentum": 1.0, "steps": 3},      # running = last batch (unbiased variance)
    {"batch_size": 16, "momentum": 0.0, "steps": 10},     # running statistics never move from (0, 1)
    {"batch_size": 5, "momentum": 0.01, "steps": 200, "shift": -5.0, "scale": 0.1},  # mean >> std
    {"batch_size": 32, "momentum": 0.3, "steps": 50, "eps": 1.0, "shift": 0.5, "scale": 0.3},  # eps > var
]
SUMMARY_KEYS = ["batch_size", "momentum", "gamma", "beta", "eps", "shift", "scale", "steps", "running_mean",
                "running_var", "train_out_mean", "train_out_std", "eval_in_mean", "eval_in_std", "eval_out_mean",
                "eval_out_std"]


def run_module(module: str, body: str, payload: object) -> object:
    """Import ``bncourse/web/<module>`` in Node as ``M``, run ``body`` (JS that sets ``out``) on ``input``."""
    if NODE is None:
        if os.environ.get("BNCOURSE_REQUIRE_SITE") == "1":
            pytest.fail("BNCOURSE_REQUIRE_SITE=1 but node is missing (scripts/setup_system.sh installs npm/nodejs)")
        pytest.skip("node is not installed")
    script = (f"import * as M from {json.dumps((WEB / module).as_uri())};\n"
              "let data = ''; process.stdin.on('data', (c) => data += c);\n"
              "process.stdin.on('end', () => { const input = JSON.parse(data); let out;\n"
              f"{body}\n process.stdout.write(JSON.stringify(out)); }});")
    proc = subprocess.run([NODE, "--input-type=module", "-e", script], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def simulations() -> list[dict]:
    return run_module("bn_explorer.js", "out = input.map((p) => M.simulate(p));", BN_CASES)


@pytest.mark.parametrize("case", range(len(BN_CASES)))
def test_bn_explorer_js_matches_bncourse_numpy(simulations, case):
    sim = simulations[case]
    p = sim["params"]
    batches = np.array(sim["batches"], dtype=np.float64)     # (steps, m): what the page generated
    steps, m = batches.shape
    assert (steps, m) == (p["steps"], p["batch_size"])
    assert p == {**widgets.BN_DEFAULTS, **BN_CASES[case]}     # the page's defaults are the package's

    bn = BatchNorm(1, eps=p["eps"], momentum=p["momentum"], dtype=np.float64)
    bn.weight[:] = p["gamma"]
    bn.bias[:] = p["beta"]
    big = float(np.abs(batches).max())
    for t in range(steps):
        y = bn(batches[t][:, None])[:, 0]
        # the rounding of a sequential (JS) against a pairwise (NumPy) sum of m values, at the data's scale
        np.testing.assert_allclose(sim["trace_mean"][t + 1], bn.running_mean[0], rtol=0, atol=16 * U * m * big)
        np.testing.assert_allclose(sim["trace_var"][t + 1], bn.running_var[0], rtol=4 * U,
                                   atol=16 * U * m * big ** 2)
    assert sim["trace_mean"][0] == 0 and sim["trace_var"][0] == 1          # torch's starting buffers
    invstd = 1 / np.sqrt(batches[-1].var() + p["eps"])
    np.testing.assert_allclose(sim["train_out"], y, rtol=4 * U, atol=16 * U * m * abs(p["gamma"]) * big * invstd)

    bn.eval()
    eval_in = np.array(sim["eval_in"])
    y_eval = bn(eval_in[:, None])[:, 0]
    scale = abs(p["gamma"]) * float(np.abs(eval_in).max()) / np.sqrt(bn.running_var[0] + p["eps"])
    np.testing.assert_allclose(sim["eval_out"], y_eval, rtol=4 * U, atol=16 * U * scale * m)

    s = sim["summary"]
    assert list(s) == SUMMARY_KEYS
    want = {"running_mean": bn.running_mean[0], "running_var": bn.running_var[0],
            "train_out_mean": y.mean(), "train_out_std": y.std(),
            "eval_in_mean": eval_in.mean(), "eval_in_std": eval_in.std(),
            "eval_out_mean": y_eval.mean(), "eval_out_std": y_eval.std()}
    for k, v in want.items():
        np.testing.assert_allclose(s[k], v, rtol=1e-12, atol=1e-12 * (1 + abs(p["gamma"]) * big), err_msg=k)


def test_bn_explorer_shows_torch_rules(simulations):
    two = simulations[2]          # batch of 2, eps 1e-8, gamma -2.5, beta 1.5
    np.testing.assert_allclose(sorted(two["train_out"]), [1.5 - 2.5, 1.5 + 2.5], rtol=1e-6)
    one_shot = simulations[3]     # momentum 1: running_var is the last batch's unbiased variance
    last = np.array(one_shot["batches"][-1])
    np.testing.assert_allclose(one_shot["summary"]["running_var"], last.var(ddof=1), rtol=1e-13)
    frozen = simulations[4]       # momentum 0: the buffers stay at (0, 1)
    assert frozen["summary"]["running_mean"] == 0 and frozen["summary"]["running_var"] == 1
    # the same settings give the same batches (seeded): a reload shows the same picture
    again = run_module("bn_explorer.js", "out = M.simulate(input).batches;", BN_CASES[1])
    assert again == simulations[1]["batches"]


def test_bn_explorer_js_rejects_what_torch_rejects():
    got = run_module("bn_explorer.js", """out = input.map((p) => { try { M.simulate(p); return null; }
                                           catch (e) { return e.message; } });""",
                     [{"batch_size": 1}, {"momentum": 1.5}, {"eps": 0}, {"steps": 0}])
    assert "more than 1 value per channel" in got[0]
    assert all(got), got


@pytest.mark.parametrize("kind", widgets.AXES_KINDS)
def test_norm_axes_js_matches_beyond(kind):
    cases = [{"kind": kind, "groups": g, "shape": list(shape), "sample": s, "channel": c}
             for shape in [(3, 4, 2, 2), (2, 6, 3, 1), (1, 8, 1, 1)]
             for g in [d for d in range(1, shape[1] + 1) if shape[1] % d == 0]
             for s in range(shape[0]) for c in range(shape[1])]
    got = run_module("norm_axes.js", "out = input.map((v) => M.summarize(v));", cases)
    for case, js in zip(cases, got):
        n, c, h, w = case["shape"]
        want = beyond.shared_statistics_mask(kind, n, c, groups=case["groups"], sample=case["sample"],
                                             channel=case["channel"])
        assert js["mask"] == want.tolist(), case
        first = beyond.shared_statistics_mask(kind, n, c, groups=case["groups"])
        s = js["summary"]
        assert s["shared_with_first"] == first.sum() * h * w, case
        per_stat = beyond.values_per_statistic(kind, case["shape"], groups=case["groups"])
        assert s["values_per_statistic"] == s["shared_with_chosen"] == per_stat, case
        assert {k: s[k] for k in ("kind", "groups", "shape")} == {k: case[k] for k in ("kind", "groups", "shape")}


def test_explorers_render_both_ways():
    ex = widgets.bn_explorer(batch_size=2)
    html = ex.to_html()
    assert "data-bn-explorer" in html and "&quot;batch_size&quot;: 2" in html
    bundle = ex._repr_mimebundle_()
    assert bundle["text/html"] == html
    if widgets.widgets_unavailable is None:
        view = bundle["application/vnd.jupyter.widget-view+json"]
        w = ex.widget()
        assert w._esm == (WEB / "bn_explorer.js").read_text(encoding="utf-8")  # the same module as the site's
        assert w.values == ex.values and view["model_id"]
    axes = widgets.norm_axes("gn", groups=2)
    assert "data-norm-axes" in axes.to_html() and axes.values["shape"] == [3, 4, 2, 2]


@pytest.mark.parametrize("bad, error, match", [
    ({"batch_size": 1}, ValueError, r"batch_size must be in \[2, 64\]"),
    ({"batch_size": 2.5}, ValueError, "must be an integer"),
    ({"momentum": float("nan")}, TypeError, "finite number"),
    ({"eps": 0.0}, ValueError, "eps must be in"),
    ({"gama": 1.0}, TypeError, "unexpected keyword"),
])
def test_bn_explorer_rejects_bad_values(bad, error, match):
    with pytest.raises(error, match=match):
        widgets.bn_explorer(**bad)


def test_norm_axes_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        widgets.norm_axes("gn", groups=3)
    with pytest.raises(ValueError, match="unknown normalization"):
        widgets.norm_axes("bn2d")
    with pytest.raises(ValueError, match="four sizes"):
        widgets.norm_axes("bn", shape=(3, 4, 2))
