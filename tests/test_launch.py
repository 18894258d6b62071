"""Where learners open the chapters: the install cell, the launch links, Binder's environment, CI's Pages job.

Real Colab and Binder cannot be reached from CI; these tests check what the repository controls: that every
notebook's first code cell is the generated install cell (pinned, guarded, installing only what is missing),
that IPython turns its ``%pip`` line into a call that pip understands, that it does nothing where ``bncourse``
is importable, that one setting (``repository.url``) drives the cell and the README's links, and that Binder's
configuration installs the CPU build of torch, the chapters' imports and the package.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sync_repository as sync  # noqa: E402

NOTEBOOKS = sync.notebooks(ROOT / "book")


def test_every_managed_file_is_in_step_with_the_config():
    stale = [p.name for p, text in sync.expected_files(ROOT).items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date: {stale}; run python scripts/sync_repository.py (make sync-repository)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_install_cell(path):
    s = sync.settings(ROOT)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    first = next(c for c in cells if c["cell_type"] == "code")
    assert first == sync.install_cell(s["url"], s["tag"])
    assert sum(c.get("id") == sync.CELL_ID for c in cells) == 1


def test_install_cell_is_pinned_guarded_and_minimal():
    s = sync.settings(ROOT)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    src = sync.install_source(s["url"], s["tag"])
    assert f'"git+{s["url"]}@v{version}"' in src  # pinned to the release tag, not a branch
    assert "--no-deps" in src and src.count("%pip") == 2
    assert src.index("import bncourse") < src.index("except ImportError:") < src.index("%pip")
    # every runtime dependency of the package is among those installed only when missing
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = {req for _, req in sync.DEPENDENCIES}
    assert set(deps) <= listed, set(deps) - listed


def test_install_cell_becomes_a_pip_call_and_does_nothing_when_installed():
    from IPython.core.inputtransformer2 import TransformerManager

    src = sync.install_source("https://github.com/o/r", "v9.9.9")
    code = TransformerManager().transform_cell(src)
    assert "get_ipython().run_line_magic('pip', 'install --quiet --no-deps " in code
    assert 'install --quiet --no-deps "git+https://github.com/o/r@v9.9.9"' in code
    assert "run_line_magic('pip', 'install --quiet {missing}')" in code

    calls = []

    class Shell:  # records the magic instead of running pip
        def run_line_magic(self, name, line):
            calls.append((name, line))

    exec(compile(code, "<install cell>", "exec"), {"get_ipython": lambda: Shell()})  # bncourse is importable
    assert calls == []

    # where bncourse is missing: one pip call, and `missing` names only what cannot be imported
    namespace = {"get_ipython": lambda: Shell(), "__builtins__": __builtins__}
    real_import = __import__

    def no_bncourse(name, *args, **kwargs):
        if name == "bncourse":
            raise ImportError("no bncourse")
        return real_import(name, *args, **kwargs)

    namespace["__builtins__"] = {**__builtins__.__dict__, "__import__": no_bncourse} \
        if hasattr(__builtins__, "__dict__") else {**__builtins__, "__import__": no_bncourse}
    exec(compile(code, "<install cell>", "exec"), namespace)
    assert calls == [("pip", 'install --quiet --no-deps "git+https://github.com/o/r@v9.9.9"')]
    assert namespace["missing"] == ""  # this environment has every dependency: nothing else is installed


def test_one_setting_updates_cell_and_links(tmp_path):
    """Changing repository.url and running the sync changes every install cell and README link."""
    for name in ("_config.yml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_*"))
    config = tmp_path / "_config.yml"
    config.write_text(re.sub(r"url: https://github.com/\S+", "url: https://github.com/someone/fork",
                             config.read_text()), encoding="utf-8")
    expected = sync.expected_files(tmp_path)
    readme = expected[tmp_path / "README.md"]
    for p in sync.notebooks(tmp_path / "book"):
        rel = f"book/{p.name}"
        assert f"https://colab.research.google.com/github/someone/fork/blob/main/{rel}" in readme
        assert f"https://mybinder.org/v2/gh/someone/fork/main?urlpath=lab/tree/{rel}" in readme
        assert "git+https://github.com/someone/fork@v" in expected[p]
        assert "bncourse/bncourse" not in expected[p]
    assert "github.com/bncourse/bncourse" not in readme.split(sync.START)[1].split(sync.END)[0]


def test_binder_installs_cpu_torch_the_chapters_needs_and_the_package():
    req = (ROOT / "binder" / "requirements.txt").read_text()
    lines = [ln.strip() for ln in req.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    torch_lines = [ln for ln in lines if ln.startswith("torch")]
    assert len(torch_lines) == 1 and torch_lines[0].endswith("+cpu"), torch_lines  # no CUDA wheels
    names = {re.split(r"[<>=!~ ]", ln, maxsplit=1)[0] for ln in lines if not ln.startswith("-")}
    needed = {re.split(r"[<>=!~ ]", req, maxsplit=1)[0] for _, req in sync.DEPENDENCIES}
    assert needed <= names, needed - names
    assert not names & {"jupyter-book", "playwright", "pytest", "hypothesis"}  # nothing to build or test the site
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post and "--no-deps ." in post


def test_pages_workflow_publishes_the_build():
    wf = (ROOT / ".github" / "workflows" / "pages.yml").read_text()
    assert "branches: [main]" in wf and "make book" in wf
    assert "actions/upload-pages-artifact" in wf and "path: _build/html" in wf and "actions/deploy-pages" in wf
    assert "download.pytorch.org/whl/cpu" in wf


def test_pages_workflow_is_valid_yaml():
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    assert set(wf["jobs"]) == {"build", "deploy"} and wf["jobs"]["deploy"]["needs"] == "build"
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_setup_without_apt_says_in_one_line_what_is_missing_and_what_works(tmp_path):
    """A machine without apt-get (macOS...), simulated by a PATH that holds only bash and id."""
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "id"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"no {tool}")
        (bindir / tool).symlink_to(found)
    proc = subprocess.run([str(bindir / "bash"), str(ROOT / "scripts" / "setup_system.sh")],
                          env={"PATH": str(bindir)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("system packages: no apt-get here; missing: ") and "npm" in line and "chromium" in line
    assert "notebooks and unit tests work" in line and "make book needs npm" in line
