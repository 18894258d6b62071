"""What a training run recorded: :class:`History`, returned by :func:`bncourse.training.train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["History"]


@dataclass
class History:
    """What :func:`bncourse.training.train` recorded.

    Attributes:
        steps: training steps done (1..n), one per entry of ``train_loss``.
        train_loss: mini-batch loss at each step (before that step's update), float.
        evals: one dict per evaluation point: ``{"step": s, "train_loss", "train_acc", "<eval>_loss",
            "<eval>_acc"}`` with ``<eval>`` = ``"test"`` or ``"val"`` (``train_*`` on a fixed training subset,
            all in eval mode). Step 0 is the untrained model.
        epochs: with ``epochs=`` training, one dict per epoch: ``{"epoch", "step", "train_loss", "train_acc"``
            (means over the epoch's mini-batches, train mode), ``"<eval>_loss", "<eval>_acc"}``.
        diverged: the loss became non-finite (NaN / inf); training stopped at ``diverged_at``.
        config: the arguments of the run (lr, batch_size, seed, ...).
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False
    diverged_at: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one evaluated metric, e.g. ``"test_acc"``; ``"train_loss_per_step"`` gives
        the per-step mini-batch losses."""
        if name == "train_loss_per_step":
            return np.asarray(self.steps), np.asarray(self.train_loss)
        if not self.evals:
            raise KeyError(f"no evaluations recorded (pass eval_every= to train); cannot get {name!r}")
        if name not in self.evals[0]:
            raise KeyError(f"unknown metric {name!r}; recorded: {sorted(self.evals[0])}")
        return (np.asarray([e["step"] for e in self.evals]),
                np.asarray([e[name] for e in self.evals], dtype=float))

    def steps_to(self, metric: str, threshold: float, *, mode: str = "max") -> int | None:
        """First evaluated step at which ``metric >= threshold`` (``mode="max"``, for accuracies) or
        ``<= threshold`` (``mode="min"``, for losses); ``None`` if never reached."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        steps, values = self.metric(metric)
        hit = values >= threshold if mode == "max" else values <= threshold
        idx = np.flatnonzero(hit)
        return int(steps[idx[0]]) if len(idx) else None

    def final(self, metric: str) -> float:
        """Value of ``metric`` at the last evaluation."""
        return float(self.metric(metric)[1][-1])

    def best(self, metric: str, *, mode: str = "max") -> float:
        """Best value of ``metric`` over the evaluations (max, or min with ``mode="min"``)."""
        values = self.metric(metric)[1]
        return float(np.nanmax(values) if mode == "max" else np.nanmin(values))
