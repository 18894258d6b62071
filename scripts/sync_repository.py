"""Propagate the repository's address (``repository.url`` in ``_config.yml``) to the files that embed it.

    python scripts/sync_repository.py           # rewrite what is out of date (make sync-repository)
    python scripts/sync_repository.py --check   # exit 1 and list what is out of date (the tests do this)
    python scripts/sync_repository.py --ref SHA # pin the install cell to a commit instead of the release tag

Jupyter Book derives the launch buttons from ``_config.yml`` by itself; this script keeps in step:

* the **install cell**, the first code cell of every notebook under ``book/``: on Colab (or any Jupyter where
  ``bncourse`` is missing) it ``%pip install``\\ s the package from the repository, pinned to the release tag
  ``v<version>`` of ``pyproject.toml`` (or ``--ref``), with ``--no-deps``, then only those of its dependencies
  that are not importable (Colab has them all); where ``bncourse`` is installed it does nothing;
* the **Colab and Binder links** in ``README.md``, between ``<!-- launch-links:start -->`` and
  ``<!-- launch-links:end -->`` (at ``repository.branch``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CELL_ID = "bncourse-install"
START, END = "<!-- launch-links:start -->", "<!-- launch-links:end -->"
# import name -> pip requirement: the package's runtime dependencies and what the chapters import besides.
DEPENDENCIES = (
    ("numpy", "numpy>=1.26"),
    ("torch", "torch>=2.3"),
    ("matplotlib", "matplotlib>=3.9"),
    ("sklearn", "scikit-learn>=1.3"),
    ("threadpoolctl", "threadpoolctl>=3"),
    ("tqdm", "tqdm>=4.66"),
    ("ipywidgets", "ipywidgets>=8.1,<9"),
    ("sympy", "sympy>=1.12"),
)


def project_version(root: Path = ROOT) -> str:
    """``version`` of the ``[project]`` table of pyproject.toml (a regex: tomllib needs Python 3.11)."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, flags=re.M | re.S)
    if not m:
        raise SystemExit("pyproject.toml: no version in [project]")
    return m.group(1)


def settings(root: Path = ROOT) -> dict[str, str]:
    """``url``, ``branch``, ``owner_repo`` (for GitHub) and the release ``tag`` of the repository."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    m = re.fullmatch(r"https://github\.com/([^/\s]+/[^/\s]+?)(?:\.git)?", url)
    if not m:
        raise SystemExit(f"_config.yml: repository.url must be https://github.com/OWNER/REPO, got {url!r}")
    version = project_version(root)
    return {"url": url, "branch": str(repo.get("branch") or "main"), "owner_repo": m.group(1), "tag": f"v{version}"}


def install_source(url: str, ref: str) -> str:
    """The install cell's code."""
    deps = ",\n".join(f"        ({mod!r}, {req!r})" for mod, req in DEPENDENCIES)
    return (
        "# Colab, Binder or a fresh Jupyter: install the course's package if it is missing (here it does nothing).\n"
        "# Only bncourse itself, plus whichever of its dependencies cannot be imported (Colab has them all).\n"
        "try:\n"
        "    import bncourse  # noqa: F401\n"
        "except ImportError:\n"
        "    import importlib.util\n"
        "\n"
        "    missing = \" \".join(repr(req) for module, req in (\n"
        f"{deps},\n"
        "    ) if importlib.util.find_spec(module) is None)\n"
        f"    %pip install --quiet --no-deps \"git+{url}@{ref}\"\n"
        "    if missing:  # with their own dependencies\n"
        "        %pip install --quiet {missing}\n"
    )


def install_cell(url: str, ref: str) -> dict:
    """The install cell as notebook JSON (hidden on the website: it matters only where a kernel runs)."""
    lines = install_source(url, ref).splitlines(keepends=True)
    return {"cell_type": "code", "execution_count": None, "id": CELL_ID,
            "metadata": {"tags": ["remove-cell"]}, "outputs": [], "source": lines}


def notebooks(book: Path = BOOK) -> list[Path]:
    return sorted(p for p in book.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def with_install_cell(nb: dict, cell: dict) -> dict:
    """``nb`` with ``cell`` as its first code cell (replacing an earlier install cell)."""
    cells = [c for c in nb["cells"] if c.get("id") != CELL_ID]
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    return {**nb, "cells": cells[:first_code] + [cell] + cells[first_code:]}


def launch_links(s: dict[str, str], book: Path = BOOK) -> str:
    """The README's table of Colab and Binder links, one row per chapter notebook."""
    rows = ["| chapter | Colab | Binder |", "|---|---|---|"]
    for p in notebooks(book):
        rel = p.relative_to(book.parent).as_posix()
        colab = f"https://colab.research.google.com/github/{s['owner_repo']}/blob/{s['branch']}/{rel}"
        binder = f"https://mybinder.org/v2/gh/{s['owner_repo']}/{s['branch']}?urlpath=lab/tree/{rel}"
        rows.append(f"| `{rel}` | [open in Colab]({colab}) | [open in Binder]({binder}) |")
    return "\n".join(rows)


def expected_files(root: Path = ROOT, ref: str | None = None) -> dict[Path, str]:
    """Every file this script manages -> the text it should have."""
    s = settings(root)
    cell = install_cell(s["url"], ref or s["tag"])
    out = {}
    for p in notebooks(root / "book"):
        nb = json.loads(p.read_text(encoding="utf-8"))
        out[p] = json.dumps(with_install_cell(nb, cell), indent=1, ensure_ascii=False) + "\n"
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md: the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    out[readme] = f"{head}{START}\n{launch_links(s, root / 'book')}\n{END}{tail}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, do not write")
    parser.add_argument("--ref", help="tag or commit for the install cell (default v<version>)")
    args = parser.parse_args(argv)
    stale = [p for p, text in expected_files(ROOT, args.ref).items() if p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run python scripts/sync_repository.py)")
        return 1 if stale else 0
    for p, text in expected_files(ROOT, args.ref).items():
        if p in stale:
            p.write_text(text, encoding="utf-8")
            print(f"updated {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
