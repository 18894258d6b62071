"""Every chapter keeps its claims on seeds nobody tuned on and on other CPUs: each chapter notebook is executed
(as ``make notebooks`` does, with nbval, claims strict) with ``BNCOURSE_SEED_OFFSET`` set, which every generator
of :mod:`bncourse.seeding` adds to its seed, under this machine's CPU and two simulated ones.

Slow (minutes per chapter, offset and CPU), so not part of the normal run: marked ``slow`` and skipped unless
``BNCOURSE_SLOW=1``. Offsets: ``BNCOURSE_SLOW_OFFSETS`` (comma-separated, default ``101,202``); CPUs:
``BNCOURSE_SLOW_CPUS`` (comma-separated names of :data:`CPUS`, default all three); chapters: all
``book/ch*.ipynb``, or ``-k ch5`` to pick some. Example::

    BNCOURSE_SLOW=1 OMP_NUM_THREADS=1 python -m pytest tests/test_seed_offsets_slow.py -m slow -k "ch5 and avx2"
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bncourse.claims import STRICT_ENV
from bncourse.seeding import SEED_OFFSET_ENV

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.name for p in (ROOT / "book").glob("ch*.ipynb"))
OFFSETS = [int(s) for s in os.environ.get("BNCOURSE_SLOW_OFFSETS", "101,202").split(",") if s.strip()]
#: Floating-point paths: this machine's own, an AVX2 CPU, and the generic code paths (set before Python starts).
CPUS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}
CPU_NAMES = [s.strip() for s in os.environ.get("BNCOURSE_SLOW_CPUS", ",".join(CPUS)).split(",") if s.strip()]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BNCOURSE_SLOW") != "1",
                       reason="slow: executes every chapter with shifted seeds; set BNCOURSE_SLOW=1 to run"),
]


@pytest.mark.parametrize("cpu", CPU_NAMES)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_holds_with_shifted_seeds(chapter, offset, cpu):
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")}
    env.update(CPUS[cpu], **{SEED_OFFSET_ENV: str(offset), "BNCOURSE_PROGRESS": "0", STRICT_ENV: "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "--no-header",
           str(ROOT / "book" / chapter)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, (f"{chapter} with {SEED_OFFSET_ENV}={offset} on CPU {cpu} failed:\n"
                                 + (run.stdout + run.stderr)[-6000:])
