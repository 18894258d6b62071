"""Small Sphinx fixes for the course website (loaded from ``_config.yml``: ``sphinx.local_extensions``).

* Inline scripts that extensions add with ``app.add_js_file(None, body=...)`` after the HTML builder started
  (sphinx-thebe 0.3.1 and sphinx-togglebutton under Jupyter Book 1) end up twice on every page: once from the
  registry (filename ``''``) and once directly (filename ``None``), which Sphinx does not see as equal. The
  browser then reports ``Identifier 'THEBE_JS_URL' has already been declared``. Identical script entries are
  dropped from each page's context, keeping the first.
* The explorers of ``bncourse.widgets`` render on the site as ``<div data-bn-explorer>`` / ``<div data-norm-axes>``
  (their ``text/html``); the page that holds one gets its ES module (``bncourse/web/*.js``, copied to
  ``_static/`` through ``html_static_path``) as a ``<script type="module">``, and no other page does.
* In Jupyter the same explorers are anywidgets, so the executed notebook's saved widget state holds their
  models. The site never shows those views (it shows the ``text/html``), and the ipywidgets embedder would try
  to fetch the ``anywidget`` front end from a CDN: their models are dropped from the page's widget state, and
  when nothing is left, so are the state and the embedder's scripts.
* Figures' alt text: ``bncourse.setup_chapter()`` makes the kernel describe every inline figure in its output's
  metadata (``{"image/png": {"alt": ...}}``, from the titles, axis labels and legend); myst-nb reads only
  width and height from there, so its image rendering is wrapped to use that ``alt`` too (unless the cell sets
  one). Without it the image's alt text would be its file name.
* ``bnc_a11y.js`` (every page) repairs the theme's markup where axe-core reports serious WCAG 2.1 violations.
* Self-check progress: the ids of every page's self-checks (multiple choice and numeric quizzes) are
  collected while reading; the page holding ``<div data-bnc-progress>`` (the landing page) gets them as JSON
  and ``bnc_progress.js``, which counts the answers kept in the browser's ``localStorage`` (nothing is sent).
"""
from __future__ import annotations

import json
import re
from typing import Any

from docutils import nodes

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MODULES = {"data-bn-explorer": "bn_explorer.js", "data-norm-axes": "norm_axes.js"}
QUIZ = re.compile(r'class="bnc-quiz bnc-(?:mc|numeric)"[^>]*?data-bnc-id="([^"]+)"')


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


def _references(models: dict[str, Any], keys: set[str]) -> set[str]:
    """The model ids that the models ``keys`` refer to (``"IPY_MODEL_<id>"`` values in their state)."""
    return set(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps([models[k] for k in keys])))


def _without_anywidgets(app, context: dict[str, Any]) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    for i, js in enumerate(scripts):
        attributes = dict(getattr(js, "attributes", {}))
        if attributes.get("type") != WIDGET_STATE or "body" not in attributes:
            continue
        state = json.loads(attributes["body"])
        models = state.get("state", {})
        dropped = {k for k, m in models.items() if m.get("model_module") == "anywidget"}
        # with the models that only they refer to (their layout and style)
        only_theirs = _references(models, dropped) - _references(models, set(models) - dropped)
        dropped |= only_theirs
        kept = {k: m for k, m in models.items() if k not in dropped}
        if len(kept) == len(models):
            return
        if kept:
            attributes["body"] = json.dumps({**state, "state": kept}).replace("</", "<\\/")
            scripts[i] = type(js)(js.filename, priority=js.priority, **attributes)
        else:
            # Sphinx holds the static files as "_static/<path>"
            embedder = {f"_static/{path}" for path in app.config.nb_ipywidgets_js or {}}
            scripts[:] = [x for j, x in enumerate(scripts) if j != i and str(getattr(x, "filename", x)) not in embedder]
        return


def _chapters_with_quizzes(app, pagename: str) -> list[dict[str, Any]]:
    """Every page with self-checks, in the order of the table of contents: title, relative URL, quiz ids."""
    env = app.env
    order: list[str] = []

    def walk(doc: str) -> None:
        if doc in order:
            return
        order.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(app.config.root_doc)
    quizzes = getattr(env, "bncourse_quizzes", {})
    return [{"title": env.titles[doc].astext() if doc in env.titles else doc,
             "url": app.builder.get_relative_uri(pagename, doc), "ids": quizzes[doc]}
            for doc in order if quizzes.get(doc)]


def _page_assets(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if app.builder.format != "html":
        return
    body = context.get("body") or ""
    for marker, module in MODULES.items():
        if marker in body:
            app.add_js_file(module, type="module")
    if "data-bnc-progress" in body:
        data = json.dumps(_chapters_with_quizzes(app, pagename)).replace("<", "\\u003c")
        app.add_js_file(None, type="application/json", id="bnc-progress-data", body=data)
        app.add_js_file("bnc_progress.js")
    _without_anywidgets(app, context)


def _collect_quizzes(app, doctree) -> None:
    ids: list[str] = []
    for node in doctree.findall(nodes.raw):
        if "html" in node.get("format", "").split():
            ids += [i for i in QUIZ.findall(node.astext()) if i not in ids]
    if not hasattr(app.env, "bncourse_quizzes"):
        app.env.bncourse_quizzes = {}
    app.env.bncourse_quizzes[app.env.docname] = ids


def _purge_quizzes(app, env, docname: str) -> None:
    getattr(env, "bncourse_quizzes", {}).pop(docname, None)


def _merge_quizzes(app, env, docnames, other) -> None:
    if not hasattr(env, "bncourse_quizzes"):
        env.bncourse_quizzes = {}
    env.bncourse_quizzes.update({d: q for d, q in getattr(other, "bncourse_quizzes", {}).items() if d in docnames})


def _alt_text_from_output_metadata() -> None:
    from myst_nb.core.render import NbElementRenderer

    original = NbElementRenderer.render_image
    if getattr(original, "_bncourse_alt", False):
        return

    def render_image(self, data) -> list[nodes.Element]:
        rendered = original(self, data)
        alt = (data.output_metadata.get(data.mime_type) or {}).get("alt")
        if isinstance(alt, str) and alt.strip():
            for node in rendered:
                if isinstance(node, nodes.image) and not node.get("alt"):
                    node["alt"] = alt.strip()
        return rendered

    render_image._bncourse_alt = True
    NbElementRenderer.render_image = render_image


def setup(app) -> dict[str, Any]:
    _alt_text_from_output_metadata()
    # repairs of the theme's markup that axe-core flags (see the file)
    app.add_js_file("bnc_a11y.js")
    app.connect("doctree-read", _collect_quizzes)
    app.connect("env-purge-doc", _purge_quizzes)
    app.connect("env-merge-info", _merge_quizzes)
    app.connect("html-page-context", _page_assets, priority=800)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
