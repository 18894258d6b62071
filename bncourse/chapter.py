"""What every chapter notebook does first: :func:`setup_chapter`.

One call instead of each chapter repeating its thread settings and figure style::

    import bncourse
    bncourse.setup_chapter()
"""
from __future__ import annotations

__all__ = ["setup_chapter", "PLOT_STYLE", "figure_alt_text"]

#: Matplotlib settings of the course's figures (a light grid on every axes).
PLOT_STYLE: dict[str, object] = {"axes.grid": True, "grid.alpha": 0.3}


def setup_chapter(threads: int = 1) -> None:
    """Set the thread counts and the figure style of a chapter.

    * ``torch.set_num_threads(threads)``, and the BLAS / OpenMP pools of NumPy and scikit-learn
      (``threadpoolctl``) to ``threads``: the chapters' small experiments run fastest on one thread, and
      the CI machine has two cores shared by the notebook kernel and the test runner;
    * :data:`PLOT_STYLE` into ``matplotlib.rcParams``;
    * in IPython, every figure shown inline carries a text description (:func:`figure_alt_text`) in its
      output's metadata (``{"image/png": {"alt": ...}}``), which the website uses as the image's alt text.
    """
    import matplotlib
    import torch
    from threadpoolctl import threadpool_limits

    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))
    threadpool_limits(int(threads))
    matplotlib.rcParams.update(PLOT_STYLE)
    _describe_inline_figures()


def _text(artist) -> str:
    return " ".join(artist.get_text().split())


def figure_alt_text(fig) -> str:
    """A text description of a Matplotlib figure from its titles, axis labels and legend entries.

    For example ``"Figure: running mean over 100 steps (x: step; y: running mean; lines: momentum 0.1,
    momentum 0.01)"``; panels are separated by a vertical bar. A figure with no text at all is described by
    its number of panels.
    """
    panels = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        bits = [b for b in (f"x: {_text(ax.xaxis.label)}" if _text(ax.xaxis.label) else "",
                            f"y: {_text(ax.yaxis.label)}" if _text(ax.yaxis.label) else "") if b]
        labels = [" ".join(str(lab).split()) for lab in ax.get_legend_handles_labels()[1] if not str(lab).startswith("_")]
        if labels:
            bits.append("lines: " + ", ".join(labels))
        title = " ".join(" ".join(ax.get_title(loc).split()) for loc in ("left", "center", "right")
                         if ax.get_title(loc).strip())
        if title or bits:
            panels.append(f"{title or 'panel'} ({'; '.join(bits)})" if bits else title)
    suptitle = " ".join(fig.get_suptitle().split())
    head = f"Figure: {suptitle}" if suptitle else "Figure"
    if not panels:
        return f"{head} with {len(fig.axes)} panel{'s' if len(fig.axes) != 1 else ''} and no labels"
    return f"{head}: " + " | ".join(p for p in panels if p)


def _describe_inline_figures() -> None:
    """Make IPython's PNG rendering of a figure also return its description (a no-op outside IPython).

    The inline backend registers its formatter when pyplot is first used and again when it is reconfigured,
    so the wrapper is checked before every cell runs.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    # the inline backend is loaded at the first figure and then (re-)registers its formatter: load it now
    if "inline" in str(matplotlib.rcParams._get("backend")):
        plt.switch_backend(matplotlib.rcParams._get("backend"))

    def wrap(_info=None) -> None:
        png = shell.display_formatter.formatters["image/png"]
        try:
            current = png.lookup_by_type(Figure)
        except KeyError:
            return
        if getattr(current, "_bncourse_alt", False):
            return

        def with_alt(fig, _render=current):
            data = _render(fig)
            if data is None or isinstance(data, tuple):
                return data
            return data, {"alt": figure_alt_text(fig)}

        with_alt._bncourse_alt = True
        png.for_type(Figure, with_alt)

    wrap()
    if wrap.__qualname__ not in {getattr(f, "__qualname__", "") for f in shell.events.callbacks["pre_run_cell"]}:
        shell.events.register("pre_run_cell", wrap)
