"""Execute one notebook the way a learner's Jupyter does, and report where ``bncourse`` came from.

    python scripts/execute_notebook.py IN.ipynb OUT.ipynb [--timeout 300]

Runs every cell in a fresh ``python3`` kernel of *this* interpreter (the kernel's working folder is the
notebook's folder), then one extra cell that prints a JSON line with ``sys.prefix`` and ``bncourse.__file__``.
The executed notebook, with outputs, is written to OUT. Exits 1 with the failing cell's error when a cell
raises. Needs only ``nbclient``, ``nbformat`` and ``ipykernel`` (no Jupyter server, no JupyterLab).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PROBE = (
    "import json as _json, sys as _sys, bncourse as _bn\n"
    "print('BNCOURSE_PROBE ' + _json.dumps({'prefix': _sys.prefix, 'file': _bn.__file__}))"
)


def main(argv: list[str] | None = None) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)

    nb = nbformat.read(args.notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.resolve().parent)}})
    start = time.perf_counter()
    status = 0
    try:
        client.execute()
    except CellExecutionError as err:
        print(f"{args.notebook.name}: a cell failed:\n{err}", file=sys.stderr)
        status = 1
    finally:
        nbformat.write(nb, args.output)
    print(f"{args.notebook.name}: executed in {time.perf_counter() - start:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
