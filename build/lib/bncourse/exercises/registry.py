"""Question ids: well-formed, and unique within a Python session (one notebook's kernel).

Re-running a notebook cell re-creates the same question; that is allowed (same id, same kind, same prompt).
A *different* question with an id already in use is rejected. Ids across all chapters are checked statically
by ``tests/test_notebooks_clean.py``.
"""
from __future__ import annotations

import re

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_seen: dict[str, tuple[str, str]] = {}


def check_id(qid: object) -> str:
    """Return ``qid`` if it is a valid id (letters, digits, ``-``, ``_``, ``.``), else raise ``ValueError``."""
    if not isinstance(qid, str) or not ID_PATTERN.match(qid):
        raise ValueError(f"id must be a non-empty string of letters, digits, '-', '_' or '.', "
                         f"starting with a letter or digit (it becomes an HTML id); got {qid!r}")
    return qid


def register(qid: str, kind: str, prompt: str) -> None:
    """Record that question ``qid`` is defined; raise ``ValueError`` if a different question uses the id."""
    previous = _seen.get(qid)
    if previous is not None and previous != (kind, prompt):
        raise ValueError(
            f"duplicate id {qid!r}: it is already used by another question in this session "
            f"({previous[0]} with prompt {previous[1][:60]!r}). Give each question its own id "
            f"(if you edited this question, call bncourse.exercises.registry.forget({qid!r}) or restart the kernel)")
    _seen[qid] = (kind, prompt)


def forget(qid: str | None = None) -> None:
    """Forget one id (or all ids when ``qid`` is None), e.g. after editing a question in a live session."""
    if qid is None:
        _seen.clear()
    else:
        _seen.pop(qid, None)
