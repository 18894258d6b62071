#!/usr/bin/env python3
"""Strip notebooks for committing: no outputs, no execution counts, no widget state.

Usage: ``python scripts/strip_notebooks.py [PATH ...]`` (files or folders; default ``book``).
``--check`` only reports the notebooks that are not clean (exit status 1 if any), writing nothing.
Plain ``json``, no dependency: the file keeps nbformat's layout (1-space indent, key order, final newline).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def problems(nb: dict) -> list[str]:
    """What is not clean in a notebook (empty list: clean)."""
    found = []
    if "widgets" in nb.get("metadata", {}):
        found.append("metadata.widgets (saved widget state)")
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i}: outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i}: execution_count")
        if "widgets" in cell.get("metadata", {}):
            found.append(f"cell {i}: metadata.widgets")
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {i}: metadata.execution (timings)")
    return found


def strip(nb: dict) -> dict:
    """Return the notebook without outputs, execution counts, widget state and execution timings."""
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            cell.get("metadata", {}).pop("widgets", None)
            cell.get("metadata", {}).pop("execution", None)
    return nb


def notebooks(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb")
                          if not any(part.startswith(".") or part == "_build" for part in q.relative_to(p).parts))
        elif p.suffix == ".ipynb":
            out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "book"])
    parser.add_argument("--check", action="store_true", help="report unclean notebooks, change nothing")
    args = parser.parse_args(argv)
    dirty = 0
    for path in notebooks(args.paths):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: {', '.join(found)}")
            continue
        new = json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n"
        path.write_text(new, encoding="utf-8")
        print(f"stripped {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
