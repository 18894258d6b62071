"""The base class of every self-check: id, prompt and the two renderings (live widget, static HTML)."""
from __future__ import annotations

from typing import Any

from . import markup, registry
from .feedback import Feedback


class Question:
    """Common part of :class:`MultipleChoice`, :class:`Numeric` and :class:`CodeExercise`.

    Displaying a question in Jupyter gives a mime bundle with both renderings: the live ipywidget
    (``application/vnd.jupyter.widget-view+json``, chosen by Jupyter) and a self-contained HTML/JS quiz
    (``text/html``, chosen by the website build through ``nb_mime_priority_overrides`` in ``_config.yml``).
    """

    kind: str = "question"

    def __init__(self, *, id: str, prompt: str, hint: str | None = None, explanation: str | None = None) -> None:
        self.id = registry.check_id(id)
        self.prompt = markup.validate(prompt, f"{id}: prompt")
        if not prompt.strip():
            raise ValueError(f"{id}: prompt is empty")
        self.hint = None if hint is None else markup.validate(hint, f"{id}: hint")
        self.explanation = None if explanation is None else markup.validate(explanation, f"{id}: explanation")

    def _register(self) -> None:
        """Call at the end of a subclass constructor, once the definition is known to be valid."""
        registry.register(self.id, type(self).__name__, self.prompt)

    def _hint_tail(self) -> str:
        return f"Hint: {self.hint}" if self.hint else ""

    def _right(self, verdict: str) -> Feedback:
        return Feedback(True, " ".join(p for p in (verdict, self.explanation or "") if p))

    # ----- renderings ---------------------------------------------------------------------------------------
    def to_html(self) -> str:
        """The self-contained static HTML/JS rendering (inline CSS and JS, all text escaped)."""
        from .static_html import render

        return render(self)

    def widget(self, namespace: dict[str, Any] | None = None):
        """The live ipywidgets rendering (a ``VBox``). ``namespace`` only matters for code exercises."""
        from .live_widgets import build

        return build(self, namespace=namespace)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self.to_html()}
        try:
            view = self.widget()._repr_mimebundle_()
        except Exception:  # no ipywidgets, or no frontend: the static quiz still works
            view = None
        if view:
            bundle.update({k: v for k, v in view.items() if k != "text/plain"})
        return bundle

    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 70 else self.prompt[:67] + "..."
        return f"<{type(self).__name__} {self.id!r}: {prompt}>"
