"""bncourse.plotting: every figure has a title, labelled axes and a legend; bands span the seeds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bncourse.plotting import plot_bars, plot_curves, plot_descent, plot_percentiles  # noqa: E402
from bncourse.recorders import PercentileRecorder  # noqa: E402
from bncourse.scaling import gd_explorer  # noqa: E402
from bncourse.history import History  # noqa: E402


def _hist(values):
    return History(evals=[{"step": 10 * i, "test_acc": v} for i, v in enumerate(values)])


def test_plot_curves_bands_and_labels():
    fig, ax = plt.subplots()
    runs = {"no BN": [_hist([0.1, 0.5, 0.6]), _hist([0.1, 0.3, 0.8])], "BN": _hist([0.1, 0.8, 0.9])}
    out = plot_curves(runs, "test_acc", ax=ax, title="Accuracy")
    assert out is ax and ax.get_title() == "Accuracy"
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "test accuracy"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["no BN (2 seeds)", "BN"]
    mean_line = ax.get_lines()[0]
    np.testing.assert_allclose(mean_line.get_ydata(), [0.1, 0.4, 0.7])
    assert len(ax.collections) == 1  # one band: only the multi-seed entry
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.8) and band[:, 1].min() == pytest.approx(0.1)
    plt.close(fig)


def test_plot_curves_rejects_misaligned_histories():
    a = _hist([0.1, 0.2])
    b = History(evals=[{"step": 0, "test_acc": 0.1}, {"step": 5, "test_acc": 0.2}])
    with pytest.raises(ValueError, match="different steps"):
        plot_curves({"x": [a, b]})
    plt.close("all")


def test_plot_percentiles_and_bars():
    rec = PercentileRecorder(torch.nn.Identity(), unit=0)
    rec.steps, rec.records["output"] = [0, 10, 20], [np.array([-1.0, 0.0, 1.0])] * 3
    ax = plot_percentiles(rec, title="Sigmoid input", from_step=10)
    assert ax.get_title() == "Sigmoid input" and ax.get_xlabel() == "training step" and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["15th percentile", "50th percentile",
                                                                  "85th percentile"]
    assert ax.get_lines()[0].get_xdata().tolist() == [10, 20]
    with pytest.raises(ValueError, match="no records"):
        plot_percentiles(PercentileRecorder(torch.nn.Identity()))
    ax2 = plot_bars({"a": [1.0, 3.0], "b": 2.0}, title="T", ylabel="y")
    assert ax2.get_title() == "T" and ax2.get_legend() is not None
    plt.close("all")


def test_plot_bn_graph_draws_every_node_and_names_the_three_paths():
    from bncourse.plotting import _BN_GRAPH_EDGES, _BN_GRAPH_LABELS, _BN_GRAPH_NODES, plot_bn_graph

    ax = plot_bn_graph()
    assert ax.get_title() == "Training-mode BN as a computational graph"
    from matplotlib.text import Annotation

    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    nodes = [t for t in ax.texts if not isinstance(t, Annotation)]
    assert len(arrows) == len(_BN_GRAPH_EDGES)                    # one arrow per edge
    assert sorted(t.get_text() for t in nodes) == sorted(_BN_GRAPH_LABELS.values())   # one label per node
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 4 and any("mu" in lab for lab in labels) and any("sigma" in lab for lab in labels)
    # the graph is a DAG from x to the loss: every node but x has an incoming edge, every node but the loss
    # an outgoing one
    assert {e for _, e, _ in _BN_GRAPH_EDGES} == set(_BN_GRAPH_NODES) - {"x", "gb"}
    assert {s for s, _, _ in _BN_GRAPH_EDGES} == set(_BN_GRAPH_NODES) - {"loss"}


def test_table_html_escapes_every_cell_and_keeps_the_shape():
    from bncourse.plotting import table_html

    html = table_html(["<b>h</b>", "x"], [[1, "<script>alert(1)</script>"], ["a & b", 2.5]])
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;h&lt;/b&gt;" in html
    assert "a &amp; b" in html
    assert html.count("<th>") == 2 and html.count("<tr>") == 3 and html.count("<td>") == 4


def test_plot_descent_draws_contours_the_path_and_the_minimum():
    problem, result = gd_explorer(feature_scale=10.0, seed=0)
    fig, ax = plt.subplots()
    assert plot_descent(ax, problem, result, "Raw features") is ax
    assert ax.get_title().startswith("Raw features\n$\\kappa$ = ")
    assert ax.get_xlabel() == "$w_1$" and ax.get_ylabel() == "$w_2$"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"GD path ({result.steps} steps)", "minimum $w^*$"]
    path = ax.get_lines()[0].get_xydata()
    np.testing.assert_allclose(path, result.path)
    lo, hi = ax.get_xlim()
    assert lo <= result.path[:, 0].min() and hi >= problem.w_star[0]  # the view holds the path and w*
    plt.close(fig)
