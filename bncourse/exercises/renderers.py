"""Which function renders each kind of question: statically (HTML/JS for the website) and live (ipywidgets).

The renderer modules register their functions here, per question class, when they are imported (the package's
``__init__`` imports them), and :class:`~bncourse.exercises.question.Question` looks its renderings up here.
So imports point one way: renderers import the question classes, never the reverse.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# question class -> render(question) -> HTML string
STATIC: dict[type, Callable[..., str]] = {}
# question class -> build(question, namespace=None) -> ipywidgets.VBox
LIVE: dict[type, Callable[..., Any]] = {}
# why the live renderer could not be loaded (ipywidgets missing), if it could not
live_unavailable: str | None = None


def static(cls: type) -> Callable[[F], F]:
    """Decorator: register ``render(question) -> str`` as the static rendering of ``cls``."""
    def register(fn: F) -> F:
        STATIC[cls] = fn
        return fn
    return register


def live(cls: type) -> Callable[[F], F]:
    """Decorator: register ``build(question, namespace=None)`` as the live rendering of ``cls``."""
    def register(fn: F) -> F:
        LIVE[cls] = fn
        return fn
    return register


def lookup(table: dict[type, Callable[..., Any]], question: object, what: str) -> Callable[..., Any]:
    """The renderer of ``question``'s class (or of its nearest registered base class)."""
    for cls in type(question).__mro__:
        if cls in table:
            return table[cls]
    if table is LIVE and live_unavailable:
        raise ImportError(f"the live widgets are not available: {live_unavailable}")
    raise TypeError(f"no {what} rendering for {type(question).__name__}")
