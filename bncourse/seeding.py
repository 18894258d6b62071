"""One home for seeds: every random draw of the course's experiments goes through this module, so the
environment variable ``BNCOURSE_SEED_OFFSET`` moves all of them at once.

A chapter names its seeds ``0, 1, 2, ...``; ``BNCOURSE_SEED_OFFSET=101`` turns them into ``101, 102, ...``
without editing the chapter, which is how the course checks its claims on seeds nobody chose them on.

* :func:`seed_offset` — the offset (0 when unset);
* :func:`shifted` — ``seed + seed_offset()``;
* :func:`set_seed` — Python's ``random``, NumPy's global generator and torch's default generator;
* :func:`numpy_rng` — a ``np.random.Generator`` of its own;
* :func:`torch_generator` — a CPU ``torch.Generator`` of its own.
"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["SEED_OFFSET_ENV", "seed_offset", "shifted", "set_seed", "numpy_rng", "torch_generator"]

SEED_OFFSET_ENV = "BNCOURSE_SEED_OFFSET"


def seed_offset() -> int:
    """The integer in the environment variable ``BNCOURSE_SEED_OFFSET`` (0 when unset or empty).

    Raises:
        ValueError: the variable is set to something that is not an integer.
    """
    raw = os.environ.get(SEED_OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_OFFSET_ENV} must be an integer, got {raw!r}") from None


def shifted(seed: int) -> int:
    """``seed + seed_offset()``, after checking that ``seed`` is an integer (a float seed is a bug)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    return int(seed) + seed_offset()


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) with :func:`shifted` ``(seed)``."""
    import torch

    value = shifted(seed)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def numpy_rng(seed: int) -> np.random.Generator:
    """A NumPy generator of its own, seeded with :func:`shifted` ``(seed)``."""
    return np.random.default_rng(shifted(seed) % 2**63)


def torch_generator(seed: int):
    """A CPU ``torch.Generator`` of its own, seeded with :func:`shifted` ``(seed)``."""
    import torch

    return torch.Generator().manual_seed(shifted(seed))
