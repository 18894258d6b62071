"""The light markup of question texts, and its conversion to safe HTML.

Question texts (prompts, options, hints, feedback, explanations) are plain text with three additions:

* ``$...$`` inline math and ``$$...$$`` display math (TeX, typeset by MathJax on the website and in Jupyter);
* ```code``` inline code;
* backslash escapes ``\\$``, ``\\``` and ``\\\\`` for a literal dollar, backtick and backslash.

Everything else is text: :func:`to_html` HTML-escapes all of it (math and code included), so no question,
option, hint or answer can inject HTML or JavaScript. Math becomes ``<span class="math">\\(...\\)</span>`` —
the markup Sphinx itself emits — so the page's MathJax typesets it and nothing else.
"""
from __future__ import annotations

import html
from typing import Literal

Segment = tuple[Literal["text", "math", "displaymath", "code"], str]

_ESCAPABLE = "$`\\"


class MarkupError(ValueError):
    """A question text is malformed (an unmatched ``$`` or backtick)."""


def parse(text: str) -> list[Segment]:
    """Split ``text`` into ``(kind, content)`` segments; raise :class:`MarkupError` when unbalanced."""
    if not isinstance(text, str):
        raise TypeError(f"question text must be a str, got {type(text).__name__}")
    segments: list[Segment] = []
    buf: list[str] = []
    i, n = 0, len(text)

    def flush() -> None:
        if buf:
            segments.append(("text", "".join(buf)))
            buf.clear()

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            buf.append(text[i + 1])
            i += 2
        elif c == "$":
            display = text.startswith("$$", i)
            delim = "$$" if display else "$"
            end = _find_closing(text, delim, i + len(delim))
            if end < 0:
                raise MarkupError(f"unmatched {delim!r} at character {i} of {_short(text)!r}; "
                                  f"write \\$ for a literal dollar sign")
            body = text[i + len(delim):end]
            if not body.strip():
                raise MarkupError(f"empty math {delim}{delim} at character {i} of {_short(text)!r}")
            flush()
            segments.append(("displaymath" if display else "math", body))
            i = end + len(delim)
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise MarkupError(f"unmatched backtick at character {i} of {_short(text)!r}; "
                                  f"write \\` for a literal backtick")
            flush()
            segments.append(("code", text[i + 1:end]))
            i = end + 1
        else:
            buf.append(c)
            i += 1
    flush()
    return segments


def _find_closing(text: str, delim: str, start: int) -> int:
    """Index of the closing ``delim`` from ``start`` (a ``\\$`` inside math is TeX's escaped dollar)."""
    j = start
    while True:
        j = text.find(delim, j)
        if j < 0:
            return -1
        if text[j - 1] == "\\":
            j += 1
            continue
        return j


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate(text: str, what: str) -> str:
    """Return ``text`` if it is a well-formed question text, else raise ``ValueError`` naming ``what``."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        parse(text)
    except MarkupError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return text


def to_html(text: str) -> str:
    """Convert a question text to HTML in which every character of the input is escaped.

    Inline math becomes ``<span class="math notranslate nohighlight">\\(...\\)</span>``, display math a
    block ``span`` with ``\\[...\\]``, code a ``<code>`` element; a blank line separates paragraphs (``<br>``).
    """
    out: list[str] = []
    for kind, body in parse(text):
        esc = html.escape(body, quote=True)
        if kind == "text":
            out.append(esc.replace("\n\n", "<br><br>"))
        elif kind == "math":
            out.append(f'<span class="math notranslate nohighlight">\\({esc}\\)</span>')
        elif kind == "displaymath":
            out.append(f'<span class="math notranslate nohighlight" style="display:block;text-align:center">'
                       f'\\[{esc}\\]</span>')
        else:
            out.append(f"<code>{esc}</code>")
    return "".join(out)


def literal(text: str) -> str:
    """Escape arbitrary text (an exception message, a learner's input) so that it is markup-inert."""
    return "".join("\\" + c if c in _ESCAPABLE else c for c in str(text))


def code(text: str) -> str:
    """Markup for ``text`` shown as inline code (backticks inside become quotes)."""
    return "`" + str(text).replace("`", "'") + "`"
