"""Small Sphinx fixes for the course website (loaded from ``_config.yml``: ``sphinx.local_extensions``).

* Inline scripts that extensions add with ``app.add_js_file(None, body=...)`` after the HTML builder started
  (sphinx-thebe 0.3.1 and sphinx-togglebutton under Jupyter Book 1) end up twice on every page: once from the
  registry (filename ``''``) and once directly (filename ``None``), which Sphinx does not see as equal. The
  browser then reports ``Identifier 'THEBE_JS_URL' has already been declared``. Identical script entries are
  dropped from each page's context, keeping the first.
"""
from __future__ import annotations

from typing import Any


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for js in scripts:
        filename = getattr(js, "filename", js)
        attributes = getattr(js, "attributes", {})
        key = (str(filename or ""), tuple(sorted((k, str(v)) for k, v in dict(attributes).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
