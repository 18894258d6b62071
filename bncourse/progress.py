"""The training progress bar: shown in a Jupyter kernel, never in CI or in the website's executed notebooks."""

from __future__ import annotations

import os

__all__ = ["in_notebook", "progress_wanted", "ProgressBar"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (ZMQ shell), False in plain Python, IPython terminals and tests."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is installed with Jupyter
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_wanted(progress: bool | None) -> bool:
    """``None`` = auto: a bar only in a Jupyter kernel, and never when ``CI`` is set or
    ``BNCOURSE_PROGRESS=0``."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI") or os.environ.get("BNCOURSE_PROGRESS", "").lower() in ("0", "false", "off", "no"):
        return False
    return in_notebook()


class ProgressBar:
    """A tqdm bar over ``total`` steps when :func:`progress_wanted` says so, else nothing; ``update(step, loss)``
    after each step (the loss shown every 50 steps), ``close()`` at the end."""

    def __init__(self, progress: bool | None, total: int) -> None:
        self.bar = None
        if progress_wanted(progress):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="training", leave=False)

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if step % 50 == 0:
                self.bar.set_postfix(loss=f"{loss:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
