"""Every chapter keeps its asserts on seeds nobody tuned on: each chapter notebook is executed (as ``make notebooks``
does, with nbval) with ``BNCOURSE_SEED_OFFSET`` set, which ``bncourse.training.set_seed`` and ``train`` add to
every seed.

Slow (minutes per chapter and offset), so not part of the normal run: marked ``slow`` and skipped unless
``BNCOURSE_SLOW=1``. Offsets: ``BNCOURSE_SLOW_OFFSETS`` (comma-separated, default ``101,202``); chapters: all
``book/ch*.ipynb``, or ``-k ch5`` to pick some. Example::

    BNCOURSE_SLOW=1 OMP_NUM_THREADS=1 python -m pytest tests/test_seed_offsets_slow.py -m slow -k "ch5 or ch6"
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bncourse.training import SEED_OFFSET_ENV

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.name for p in (ROOT / "book").glob("ch*.ipynb"))
OFFSETS = [int(s) for s in os.environ.get("BNCOURSE_SLOW_OFFSETS", "101,202").split(",") if s.strip()]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BNCOURSE_SLOW") != "1",
                       reason="slow: executes every chapter with shifted seeds; set BNCOURSE_SLOW=1 to run"),
]


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_holds_with_shifted_seeds(chapter, offset):
    env = dict(os.environ, **{SEED_OFFSET_ENV: str(offset), "BNCOURSE_PROGRESS": "0"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "--no-header",
           str(ROOT / "book" / chapter)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, (f"{chapter} with {SEED_OFFSET_ENV}={offset} failed:\n"
                                 + (run.stdout + run.stderr)[-6000:])
