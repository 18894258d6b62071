"""Figures for the chapters: training curves (with seed bands), activation percentiles, BN's graph,
gradient descent on a loss surface, and small result tables (:func:`show_table`, the one table path of
the chapters).

Every helper draws into ``ax`` (or a new figure), sets a title, axis labels and a legend, and returns the
Axes, so chapters can combine them with ``plt.subplots``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from bncourse.recorders import PercentileRecorder
from bncourse.history import History

__all__ = ["plot_curves", "plot_percentiles", "plot_bars", "plot_bn_graph", "plot_descent", "show_table",
           "table_html", "metric_label", "plot_health"]

_LABELS = {
    "test_acc": "test accuracy",
    "val_acc": "validation accuracy",
    "train_acc": "training accuracy",
    "test_loss": "test loss",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "train_loss_per_step": "mini-batch training loss",
}


def metric_label(metric: str) -> str:
    """Human-readable axis label of a :class:`~bncourse.history.History` metric name."""
    return _LABELS.get(metric, metric.replace("_", " "))


def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _stack(histories: Sequence[History], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Common steps and a (n_runs, n_steps) array; runs cut to the shortest (e.g. a diverged run)."""
    series = [h.metric(metric) for h in histories]
    n = min(len(s[0]) for s in series)
    steps = series[0][0][:n]
    for s, _ in series:
        if not np.array_equal(s[:n], steps):
            raise ValueError(f"histories were evaluated at different steps; cannot band {metric!r}")
    return steps, np.stack([v[:n] for _, v in series])


def plot_curves(
    runs: Mapping[str, History | Sequence[History]],
    metric: str = "test_acc",
    *,
    ax=None,
    title: str | None = None,
    ylabel: str | None = None,
    smooth: int = 1,
    logy: bool = False,
):
    """One curve of ``metric`` against training steps per entry of ``runs``.

    Args:
        runs: label -> a :class:`~bncourse.history.History`, or a list of histories (e.g. several seeds): the mean is drawn
            with a band from the minimum to the maximum over the runs.
        metric: a History metric name (``"test_acc"``, ``"val_loss"``, ``"train_loss_per_step"``, ...).
        ax: Matplotlib Axes to draw into (default: a new figure).
        title, ylabel: text (defaults derived from the metric).
        smooth: moving-average window applied to each curve (useful for per-step losses).
        logy: logarithmic y axis.

    Returns:
        The Axes.
    """
    ax = _axes(ax)
    for label, hist in runs.items():
        hists = [hist] if isinstance(hist, History) else list(hist)
        if not hists:
            raise ValueError(f"no histories for {label!r}")
        steps, values = _stack(hists, metric)
        if smooth > 1:
            kernel = np.ones(smooth) / smooth
            values = np.stack([np.convolve(v, kernel, mode="valid") for v in values])
            steps = steps[smooth - 1 :]
        mean = values.mean(axis=0)
        suffix = f" ({len(hists)} seeds)" if len(hists) > 1 else ""
        (line,) = ax.plot(steps, mean, label=label + suffix)
        if len(hists) > 1:
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or metric_label(metric))
    ax.set_title(title or f"{metric_label(metric).capitalize()} during training")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_percentiles(
    recorder: PercentileRecorder,
    *,
    ax=None,
    title: str | None = None,
    ylabel: str = "input to the nonlinearity",
    color: str | None = None,
    from_step: int = 0,
):
    """The recorded percentiles (e.g. 15th, 50th, 85th) of one unit against training steps (Ioffe Fig. 1b, c).

    Args:
        recorder: a :class:`~bncourse.recorders.PercentileRecorder` that has recorded at least one step.
        ax, title, ylabel: as in :func:`plot_curves`. color: one colour for all lines (styles differ).
        from_step: omit records before this step (e.g. step 0 of a BN net, whose eval-mode output still
            uses the initial running statistics).

    Returns:
        The Axes.
    """
    if not recorder.steps:
        raise ValueError("the recorder has no records (was it passed to train(..., hooks=[...]) with eval_every?)")
    ax = _axes(ax)
    steps = np.asarray(recorder.steps)
    keep = steps >= from_step
    if not keep.any():
        raise ValueError(f"no records at step >= {from_step}")
    steps, p = steps[keep], recorder.percentiles[keep]
    styles = ["--", "-", ":", "-.", (0, (1, 1))]
    for j, q in enumerate(recorder.q):
        ax.plot(steps, p[:, j], linestyle=styles[j % len(styles)], color=color,
                label=f"{q:g}th percentile")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Unit {recorder.unit}: percentiles over training")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_bars(
    values: Mapping[str, float | Sequence[float]],
    *,
    ax=None,
    title: str,
    ylabel: str,
    xlabel: str = "",
    logy: bool = False,
):
    """A bar per entry (mean; min–max error bar when a sequence is given). Returns the Axes."""
    ax = _axes(ax)
    labels = list(values)
    arrays = [np.atleast_1d(np.asarray(values[k], dtype=float)) for k in labels]
    means = np.array([a.mean() for a in arrays])
    lo = means - np.array([a.min() for a in arrays])
    hi = np.array([a.max() for a in arrays]) - means
    ax.bar(labels, means, yerr=np.stack([lo, hi]) if any(len(a) > 1 for a in arrays) else None,
           capsize=4, label=ylabel)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax


# Node positions of the training-mode BN graph (chapter 5), in data coordinates of an axis-free plot.
_BN_GRAPH_NODES = {
    "x": (0.0, 1.0), "mu": (1.6, 2.0), "var": (1.6, 0.0), "xhat": (3.4, 1.0),
    "y": (4.8, 1.0), "gb": (4.8, -0.4), "loss": (6.2, 1.0),
}
_BN_GRAPH_LABELS = {
    "x": r"$x_i$", "mu": r"$\mu_\mathcal{B}$", "var": r"$\sigma^2_\mathcal{B}$", "xhat": r"$\hat{x}_i$",
    "y": r"$y_i$", "gb": r"$\gamma,\ \beta$", "loss": r"$\ell$",
}
# (from, to, path): the three ways x reaches x-hat are coloured; the rest is shared.
_BN_GRAPH_EDGES = (
    ("x", "xhat", "direct"), ("x", "mu", "via_mu"), ("mu", "xhat", "via_mu"), ("x", "var", "via_var"),
    ("mu", "var", "via_var"), ("var", "xhat", "via_var"), ("xhat", "y", "shared"), ("gb", "y", "shared"),
    ("y", "loss", "shared"),
)
_BN_GRAPH_PATHS = {
    "direct": ("tab:blue", r"$x_i \to \hat{x}_i$ directly"),
    "via_mu": ("tab:orange", r"through $\mu_\mathcal{B}$"),
    "via_var": ("tab:green", r"through $\sigma^2_\mathcal{B}$ (which also depends on $\mu_\mathcal{B}$)"),
    "shared": ("0.35", "shared by every path"),
}


def plot_bn_graph(ax=None, *, title: str = "Training-mode BN as a computational graph"):
    """Draw the graph x -> (mu, sigma^2) -> x_hat -> y -> loss of one BN channel in training mode.

    Each arrow reads "is an input of". The three paths by which ``x_i`` reaches ``x_hat_i`` (directly,
    through the mean, through the variance) are coloured and named in the legend: backpropagation adds
    their three contributions. Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    for name, (px, py) in _BN_GRAPH_NODES.items():
        shape = "round,pad=0.4" if name == "gb" else "circle,pad=0.35"
        ax.text(px, py, _BN_GRAPH_LABELS[name], ha="center", va="center", fontsize=15, zorder=3,
                bbox=dict(boxstyle=shape, facecolor="white", edgecolor="0.2"))
    for start, end, path in _BN_GRAPH_EDGES:
        color = _BN_GRAPH_PATHS[path][0]
        bend = 0.25 if (start, end) == ("mu", "var") else 0.0
        ax.annotate("", xy=_BN_GRAPH_NODES[end], xytext=_BN_GRAPH_NODES[start], zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=2, shrinkA=17, shrinkB=17,
                                    connectionstyle=f"arc3,rad={bend}"))
    handles = [Line2D([0], [0], color=c, lw=2, label=lab) for c, lab in _BN_GRAPH_PATHS.values()]
    ax.legend(handles=handles, loc="lower left", fontsize=9, frameon=False)
    ax.set_xlim(-0.5, 6.7)
    ax.set_ylim(-1.5, 2.5)
    ax.set_axis_off()
    ax.set_title(title)
    return ax


def plot_descent(ax, problem: LeastSquaresProblem, result: GDResult, title: str, margin: float = 0.3,
                 equal_aspect: bool = True):
    """Draw loss contours (log-spaced levels) and the GD path of a 2-feature problem on ``ax``.

    The view covers the path, the origin and ``w_star`` plus ``margin`` of their span; with
    ``equal_aspect`` both axes get the same scale (a square window), so elongated valleys look
    elongated. Returns ``ax``.
    """
    from bncourse.scaling import least_squares_loss, loss_grid

    path = result.path[np.all(np.isfinite(result.path), axis=1)]
    pts = np.vstack([path, problem.w_star[None, :], np.zeros((1, 2))])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-3)
    if equal_aspect:
        centre, half = (lo + hi) / 2, (1 + 2 * margin) * span.max() / 2
        lo, hi = centre - half, centre + half
    else:
        lo, hi = lo - margin * span, hi + margin * span
    w1, w2 = np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200)
    Z = loss_grid(problem.X, problem.y, w1, w2)
    zmin = float(least_squares_loss(problem.X, problem.y, problem.w_star))
    levels = zmin + np.geomspace(1e-3, 1.0, 12) * max(Z.max() - zmin, 1e-12)
    ax.contour(w1, w2, Z, levels=levels, cmap="viridis", linewidths=0.8)
    if result.diverged:
        steps = "diverged"
    else:
        steps = "not converged" if result.steps is None else f"{result.steps} steps"
    ax.plot(path[:, 0], path[:, 1], ".-", color="tab:red", ms=3, lw=1, label=f"GD path ({steps})")
    ax.plot(*problem.w_star, "k*", ms=12, label="minimum $w^*$")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    if equal_aspect:
        ax.set_aspect("equal")
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")
    ax.set_title(f"{title}\n$\\kappa$ = {result.condition_number:.1f}")
    ax.legend(loc="best", fontsize=8)
    return ax


def table_html(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A small HTML table (every cell escaped), scrollable sideways on narrow pages.

    HTML rather than Markdown because the website renders Markdown tables that a cell *outputs* as
    raw text (myst-nb parses output Markdown as CommonMark, which has no tables).
    """
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    # A wide table scrolls sideways: the scrolling region takes keyboard focus so it can be scrolled without a
    # mouse (WCAG 2.1.1; axe's scrollable-region-focusable).
    return f'<div tabindex="0" role="region" aria-label="table" style="overflow-x: auto; font-size: 0.85em">{table}</div>'


def show_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> None:
    """Display :func:`table_html` in the notebook (and on the website)."""
    from IPython.display import HTML, display

    display(HTML(table_html(header, rows)))


def plot_health(monitors: Mapping[str, HealthMonitor], step: int, axes=None):
    """A network-health dashboard: one row per monitor (e.g. ``{"no BN": m1, "BN": m2}``), four panels each.

    Panels: histograms of every watched layer's activations and of their gradients at the recorded ``step``;
    the saturated fraction per layer at each recorded step; the update-to-data ratio of every layer at
    every optimizer step (log scale, with the ``1e-3`` rule of thumb). ``axes``: (rows, 4) array or ``None``
    (a new figure). Returns the axes array.
    """
    import matplotlib.pyplot as plt

    names = list(monitors)
    if axes is None:
        _, axes = plt.subplots(len(names), 4, figsize=(17, 3.6 * len(names)), squeeze=False)
    axes = np.asarray(axes).reshape(len(names), 4)
    for row, label in zip(axes, names):
        mon = monitors[label]
        if step not in mon.steps:
            raise ValueError(f"step {step} was not recorded by the {label!r} monitor (recorded: {mon.steps})")
        k = mon.steps.index(step)
        for name in mon.acts:
            row[0].hist(mon.activations[name][k], bins=50, histtype="step", density=True, label=name)
            g = mon.gradients[name][k]
            row[1].hist(g, bins=np.linspace(-1, 1, 81) * max(np.abs(g).max(), 1e-30), histtype="step",
                        density=True, label=f"{name}: std {g.std():.1e}")
            row[2].plot(mon.steps, mon.saturation[name], "o-", label=name)
            row[3].semilogy(mon.update_steps, mon.update_ratio[name], lw=0.8, label=name)
        row[0].set(title=f"{label}: activations at step {step}", xlabel="activation output", ylabel="density")
        row[1].set(title=f"{label}: gradients at step {step}", xlabel="dL / d(activation output)",
                   ylabel="density")
        row[1].ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
        row[2].set(title=f"{label}: saturated fraction", xlabel="step", ylabel="fraction saturated",
                   ylim=(-0.02, 1.02))
        row[3].axhline(1e-3, color="k", ls="--", lw=0.8, label="$10^{-3}$")
        row[3].set(title=f"{label}: update-to-data ratio", xlabel="step", ylabel=r"$\|\Delta W\| / \|W\|$")
        for ax in row:
            ax.legend(fontsize=7)
    return axes
