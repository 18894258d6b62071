#!/usr/bin/env python3
"""Vendor the website's JavaScript assets so the built book loads nothing from a CDN.

Fetches, with ``npm pack`` (tarballs from the npm registry; no install scripts run):

- ``mathjax@3.2.2``: typesetting math (Sphinx ``mathjax_path``); keeps ``es5/tex-mml-chtml.js`` and the
  folders it loads from, without the speech-rule engine ``sre/``;
- ``requirejs@2.3.7``: the AMD loader that the ipywidgets embedder needs (``require.js``);
- ``@jupyter-widgets/html-manager@1.0.6``: renders saved ipywidget views (``dist/embed-amd.js`` and its
  chunks and icon fonts, without source maps);

into ``book/_static/vendor/<name>/``; and, for the tests only (not part of the website),

- ``axe-core@4.14.1``: the accessibility checker that the site test injects into every page (``axe.min.js``),

into ``tests/_vendor/<name>/`` (git-ignored; listed in ``html_static_path`` by ``_config.yml``, so it is
served from ``_build/html/_static/vendor/<name>/``). Idempotent: a package whose marker file
``.vendored-<version>`` is present is skipped, so a second run makes no network request.

Usage: ``python scripts/vendor_assets.py [--dest DIR] [--force]``. Exit status 1 with a clear message when
``npm`` is missing or a download fails.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "book" / "_static" / "vendor"
TEST_DEST = ROOT / "tests" / "_vendor"


@dataclass(frozen=True)
class Asset:
    spec: str  # npm package spec "name@version"
    folder: str  # destination folder name under the vendor directory
    keep: tuple[str, ...]  # paths (relative to the package root) to keep; folders are kept whole
    drop: tuple[str, ...] = ()  # glob patterns (relative to the package root) removed after extraction
    check: str = ""  # a file that must exist afterwards
    for_tests: bool = False  # vendored into TEST_DEST (not served by the website)

    @property
    def version(self) -> str:
        return self.spec.rsplit("@", 1)[1]


ASSETS = (
    Asset(
        spec="mathjax@3.2.2",
        folder="mathjax",
        keep=("es5", "LICENSE"),
        # the speech-rule engine only serves the accessibility explorer menu (3.9 MB); the other combined
        # components are alternatives to tex-mml-chtml.js (latest.js would even load from a CDN)
        drop=("es5/sre", "es5/latest.js", "es5/node-main.js", "es5/mml-*.js", "es5/tex-chtml*.js",
              "es5/tex-svg*.js", "es5/tex-mml-svg.js"),
        check="es5/tex-mml-chtml.js",
    ),
    Asset(spec="requirejs@2.3.7", folder="requirejs", keep=("require.js", "README.md"), check="require.js"),
    Asset(
        spec="@jupyter-widgets/html-manager@1.0.6",
        folder="html-manager",
        keep=("dist", "LICENSE"),
        drop=("dist/*.map", "dist/embed.js", "dist/embed.js.LICENSE.txt"),
        check="dist/embed-amd.js",
    ),
    Asset(spec="axe-core@4.14.1", folder="axe-core", keep=("axe.min.js", "LICENSE"), check="axe.min.js",
          for_tests=True),
)


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Members of an npm tarball (all under ``package/``), refusing links and path escapes."""
    members = []
    for m in tar.getmembers():
        p = Path(m.name)
        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
            raise RuntimeError(f"refusing suspicious tarball member {m.name!r}")
        members.append(m)
    return members


def vendor(asset: Asset, dest_root: Path, force: bool = False) -> str:
    """Vendor one package into ``dest_root / asset.folder``; return what was done."""
    dest = dest_root / asset.folder
    marker = dest / f".vendored-{asset.version}"
    if marker.exists() and (dest / asset.check).exists() and not force:
        return f"{asset.spec}: present in {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: it is needed once to fetch the website's JavaScript assets "
                           "(apt-get install npm, or install Node.js)")
    with tempfile.TemporaryDirectory(prefix="bncourse-vendor-") as tmp:
        tmpdir = Path(tmp)
        proc = subprocess.run([npm, "pack", asset.spec, "--silent", "--pack-destination", tmp],
                              capture_output=True, text=True, cwd=tmp)
        tarballs = sorted(tmpdir.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise RuntimeError(f"npm pack {asset.spec} failed (exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmpdir / "x", members=_safe_members(tar))
        pkg = tmpdir / "x" / "package"
        staging = tmpdir / "staging"
        staging.mkdir()
        for rel in asset.keep:
            src = pkg / rel
            if src.is_dir():
                shutil.copytree(src, staging / rel)
            elif src.is_file():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, staging / rel)
        for pattern in asset.drop:
            for p in staging.glob(pattern):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        if not (staging / asset.check).is_file():
            raise RuntimeError(f"{asset.spec}: expected file {asset.check} not found in the tarball")
        (staging / f".vendored-{asset.version}").write_text(asset.spec + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)
    return f"{asset.spec}: vendored into {dest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="vendor folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="fetch again even when present")
    args = parser.parse_args(argv)
    try:
        for asset in ASSETS:
            dest = TEST_DEST if asset.for_tests else args.dest.resolve()
            print("assets:", vendor(asset, dest, force=args.force))
    except (RuntimeError, OSError) as exc:
        print(f"assets: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
