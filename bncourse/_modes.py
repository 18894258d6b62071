"""The train/eval rules of a BatchNorm layer (``torch.nn.modules.batchnorm._BatchNorm.forward``),
shared by the NumPy ``BatchNorm``, ``bncourse.torch.BatchNorm*d`` and ``SyncBatchNorm``.

A layer describes its state with plain values; the backend increments its own counter (a NumPy
0-d array or a tensor) when :attr:`Mode.count_batch` says so, then asks :func:`average_factor`.
"""
from __future__ import annotations

from typing import NamedTuple, SupportsFloat


class Mode(NamedTuple):
    """What one forward call of a layer does.

    ``use_batch_stats``: normalize with the batch statistics (training, and evaluation without
    running buffers); ``pass_buffers``: hand the running buffers to the functional form, to be
    used (evaluation) or updated (training while tracking); ``count_batch``: increment
    ``num_batches_tracked`` first (training while tracking), even if the batch then fails a check.
    """

    use_batch_stats: bool
    pass_buffers: bool
    count_batch: bool


def batch_norm_mode(training: bool, track_running_stats: bool, has_running_stats: bool,
                    has_counter: bool) -> Mode:
    """torch's rules for a layer's ``training`` flag, ``track_running_stats`` attribute, and
    whether its running buffers and counter exist (the attributes may be flipped after
    construction: e.g. ``track_running_stats=False`` with buffers still present)."""
    return Mode(
        use_batch_stats=training or not has_running_stats,
        pass_buffers=not training or track_running_stats,
        count_batch=training and track_running_stats and has_counter,
    )


def average_factor(momentum: float | None, num_batches_tracked: SupportsFloat | None) -> float:
    """The weight of the new batch statistic in the running averages.

    ``momentum``, or for ``momentum=None`` a cumulative average: ``1 / num_batches_tracked``
    after the increment (0.0 when the batch is not counted). The counter is read only then.
    """
    if momentum is not None:
        return momentum
    return 0.0 if num_batches_tracked is None else 1.0 / float(num_batches_tracked)
