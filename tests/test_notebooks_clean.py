"""Every notebook under book/ is committed clean: no outputs, no execution counts, no widget state.

Fix with ``python scripts/strip_notebooks.py`` (``make strip``). Also checks, across all notebooks, that
self-check ids are unique in the course and that each notebook has exactly one ``# Title``.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import strip_notebooks  # noqa: E402

NOTEBOOKS = strip_notebooks.notebooks([ROOT / "book"])
QUESTION_CLASSES = {"MultipleChoice", "Numeric", "CodeExercise"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped(path):
    problems = strip_notebooks.problems(load(path))
    assert not problems, f"{path.name} is not clean ({', '.join(problems)}): run python scripts/strip_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_exactly_one_title(path):
    titles = []
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            text = re.sub(r"```.*?```", "", text, flags=re.S)  # headings inside code fences do not count
            titles += re.findall(r"^# \S.*$", text, flags=re.M)
    assert len(titles) == 1, f"{path.name}: expected exactly one '# Title', found {titles}"


def question_ids(path: Path) -> list[str]:
    """The literal ``id=`` of every MultipleChoice/Numeric/CodeExercise call in the notebook's code cells."""
    ids = []
    for cell in load(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        try:
            tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in QUESTION_CLASSES:
                for kw in node.keywords:
                    if kw.arg == "id" and isinstance(kw.value, ast.Constant):
                        ids.append(kw.value.value)
    return ids


def test_question_ids_are_unique_across_the_course():
    counts = Counter((qid) for path in NOTEBOOKS for qid in question_ids(path))
    dupes = {qid: n for qid, n in counts.items() if n > 1}
    assert not dupes, f"self-check ids used more than once: {dupes}"


def test_the_stripper_cleans_a_dirty_notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "execution_count": 3, "metadata": {"execution": {"a": 1}},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "source": "print('hi')"},
                    {"cell_type": "markdown", "metadata": {}, "source": "# T"}],
          "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(nb))
    assert strip_notebooks.main(["--check", str(path)]) == 1
    assert strip_notebooks.main([str(path)]) == 0
    clean = load(path)
    assert strip_notebooks.problems(clean) == []
    assert clean["cells"][0]["source"] == "print('hi')" and clean["cells"][1]["source"] == "# T"
    assert strip_notebooks.main(["--check", str(path)]) == 0
