"""bncourse.setup_chapter: one call sets the threads and the figure style of a chapter."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import bncourse
from bncourse.chapter import PLOT_STYLE


def test_setup_chapter_sets_threads_and_plot_style():
    threads = torch.get_num_threads()
    with threadpool_limits(None), matplotlib.rc_context():
        try:
            torch.set_num_threads(2)
            bncourse.setup_chapter()
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
            assert all(matplotlib.rcParams[k] == v for k, v in PLOT_STYLE.items())
        finally:
            torch.set_num_threads(threads)


def test_setup_chapter_rejects_bad_thread_counts():
    with pytest.raises(ValueError, match="positive integer"):
        bncourse.setup_chapter(0)
