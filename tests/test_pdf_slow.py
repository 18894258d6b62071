"""``make pdf``: the whole course as one PDF, through Sphinx's LaTeX builder and XeLaTeX (minutes: it executes
every chapter), so it is marked ``slow`` and skipped unless ``BNCOURSE_SLOW=1`` (``make slow``).

Builds into a temporary folder with the book's own configuration, and checks that the PDF exists, has the
chapters, typeset math and the figures, and the glossary's Korean as text (needs Debian's TeX Live, xeCJK and
Noto CJK: ``BNCOURSE_PDF=1 bash scripts/setup_system.sh`` installs them; ``pdftotext`` from poppler-utils reads
the text back when present).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BNCOURSE_SLOW") != "1",
                       reason="slow: builds the PDF of the whole book; set BNCOURSE_SLOW=1 to run"),
]


def test_make_pdf_builds_the_whole_book(tmp_path):
    if not (shutil.which("xelatex") and shutil.which("latexmk")):
        pytest.fail("XeLaTeX and latexmk are missing: BNCOURSE_PDF=1 bash scripts/setup_system.sh installs them")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--builder", "pdflatex", "--path-output", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    pdf = tmp_path / "_build" / "latex" / "book.pdf"
    assert proc.returncode == 0 and pdf.is_file(), (proc.stdout[-3000:], proc.stderr[-3000:])
    assert pdf.stat().st_size > 500_000, "the PDF should hold the chapters' figures"
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        for title in ("Normalization", "Dataset shift", "Internal covariate shift", "Beyond BatchNorm"):
            assert title.lower() in text.lower(), title
        assert "용어집" in text or "한국어" in text, "the glossary's Korean is missing from the PDF"
