"""What every chapter notebook does first: :func:`setup_chapter`.

One call instead of each chapter repeating its thread settings and figure style::

    import bncourse
    bncourse.setup_chapter()
"""
from __future__ import annotations

__all__ = ["setup_chapter", "PLOT_STYLE"]

#: Matplotlib settings of the course's figures (a light grid on every axes).
PLOT_STYLE: dict[str, object] = {"axes.grid": True, "grid.alpha": 0.3}


def setup_chapter(threads: int = 1) -> None:
    """Set the thread counts and the figure style of a chapter.

    * ``torch.set_num_threads(threads)``, and the BLAS / OpenMP pools of NumPy and scikit-learn
      (``threadpoolctl``) to ``threads``: the chapters' small experiments run fastest on one thread, and
      the CI machine has two cores shared by the notebook kernel and the test runner;
    * :data:`PLOT_STYLE` into ``matplotlib.rcParams``.
    """
    import matplotlib
    import torch
    from threadpoolctl import threadpool_limits

    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))
    threadpool_limits(int(threads))
    matplotlib.rcParams.update(PLOT_STYLE)
