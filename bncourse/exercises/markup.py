"""The light markup of question texts, and its conversion to safe HTML.

Question texts (prompts, options, hints, feedback, explanations) are plain text with these additions:

* ``$...$`` inline math and ``$$...$$`` display math (TeX, typeset by MathJax on the website and in Jupyter);
* ```code``` inline code;
* ``*emphasis*`` and ``**strong**`` (may contain math and code, and nest properly);
* backslash escapes ``\\$``, ``\\```, ``\\*`` and ``\\\\`` for a literal dollar, backtick, asterisk and backslash.

An asterisk opens emphasis when a non-space follows it and closes it when a non-space precedes it (as in
Markdown), so ``a * b`` is a literal asterisk; an emphasis that is never closed is an error, like an unmatched
``$``. Everything else is text: :func:`to_html` HTML-escapes all of it (math and code included), so no
question, option, hint or answer can inject HTML or JavaScript. Math becomes
``<span class="math">\\(...\\)</span>`` — the markup Sphinx itself emits — so the page's MathJax typesets it
and nothing else. :func:`unknown_markup` finds Markdown/HTML the renderer does *not* know (links, ``_x_``,
tags...), which would otherwise show literally; the tests run it on every question of the book.
"""
from __future__ import annotations

import html
import re
from typing import Literal

# ("open", "em"|"strong") and ("close", "em"|"strong") delimit emphasis; other segments carry their content.
Segment = tuple[Literal["text", "math", "displaymath", "code", "open", "close"], str]

_ESCAPABLE = "$`*\\"


class MarkupError(ValueError):
    """A question text is malformed (an unmatched ``$``, backtick or emphasis)."""


def parse(text: str) -> list[Segment]:
    """Split ``text`` into ``(kind, content)`` segments; raise :class:`MarkupError` when unbalanced."""
    if not isinstance(text, str):
        raise TypeError(f"question text must be a str, got {type(text).__name__}")
    segments: list[Segment] = []
    buf: list[str] = []
    opened: list[tuple[str, int]] = []  # open emphasis: (kind, character index), innermost last
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
        elif c == "*":
            kind = "strong" if text.startswith("**", i) else "em"
            width = 2 if kind == "strong" else 1
            after_space = i + width >= n or text[i + width].isspace()
            before_space = i == 0 or text[i - 1].isspace()
            if any(k == kind for k, _ in opened) and not before_space:
                if opened[-1][0] != kind:
                    raise MarkupError(f"{'**' if kind == 'strong' else '*'} at character {i} of {_short(text)!r} "
                                      f"closes {kind} text that encloses unclosed {opened[-1][0]} text: nest them properly")
                flush()
                segments.append(("close", kind))
                opened.pop()
            elif not after_space:
                flush()
                segments.append(("open", kind))
                opened.append((kind, i))
            else:  # an asterisk with a space after it, e.g. "a * b": literal
                buf.append(text[i:i + width])
            i += width
        else:
            buf.append(c)
            i += 1
    if opened:
        kind, at = opened[-1]
        delim = "**" if kind == "strong" else "*"
        raise MarkupError(f"unmatched {delim!r} ({kind}) at character {at} of {_short(text)!r}; "
                          f"write \\* for a literal asterisk")
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
    block ``span`` with ``\\[...\\]``, code a ``<code>`` element, emphasis ``<em>`` and strong ``<strong>``
    (always properly nested); a blank line separates paragraphs (``<br>``).
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
        elif kind == "code":
            out.append(f"<code>{esc}</code>")
        elif kind == "open":
            out.append(f"<{body}>")  # body is "em" or "strong" (parse produces nothing else)
        else:
            out.append(f"</{body}>")
    return "".join(out)


def literal(text: str) -> str:
    """Escape arbitrary text (an exception message, a learner's input) so that it is markup-inert."""
    return "".join("\\" + c if c in _ESCAPABLE else c for c in str(text))


def code(text: str) -> str:
    """Markup for ``text`` shown as inline code (backticks inside become quotes)."""
    return "`" + str(text).replace("`", "'") + "`"


# Markup a reader would expect to work but that :func:`to_html` shows literally (checked in text only, not in
# math or code). Each entry: (pattern, what it is, what to write instead).
_UNKNOWN: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), "an HTML tag (shown literally; use *emphasis*, "
                                                              "**strong** or `code`)"),
    (re.compile(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);"), "an HTML entity (shown literally; type the character)"),
    (re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)"), "a Markdown link or image (not supported in question texts)"),
    (re.compile(r"(?<![\w\\])__?(?=[^\s_])[^_\n]*(?<=[^\s_])__?(?!\w)"), "underscore emphasis (use *emphasis* "
                                                                        "or **strong**)"),
    (re.compile(r"~~"), "Markdown strikethrough (not supported)"),
    (re.compile(r"(?:^|(?<=\n))[ \t]*#{1,6}[ \t]"), "a Markdown heading (not supported)"),
    (re.compile(r"(?<=\n)[ \t]*(?:[-+]|\d+[.)])[ \t]+\S"), "a Markdown list item (not supported)"),
    (re.compile(r"\\[()\[\]]"), "a TeX math delimiter (write $...$ or $$...$$)"),
    (re.compile(r"\\[A-Za-z]+"), "a TeX command outside math (put it inside $...$)"),
    (re.compile(r"\*\*"), "a `**` that opens no **strong** text (put code in backticks, or write \\*\\*)"),
]


def unknown_markup(text: str) -> list[str]:
    """Describe every piece of ``text`` that looks like markup the renderer does not know (empty: all known).

    Raises :class:`MarkupError` if ``text`` is malformed. Math and code are not inspected (their content is
    TeX or code, not markup); literal characters written with a backslash escape are not reported.
    """
    parse(text)  # malformed text raises here, with positions in the text as written
    # Escaped characters become a neutral placeholder, so that "\\*\\*" is not mistaken for a stray "**".
    neutral = re.sub(r"\\[" + re.escape(_ESCAPABLE) + "]", "\x01", text)
    found = []
    for kind, body in parse(neutral):
        if kind != "text":
            continue
        for pattern, what in _UNKNOWN:
            found += [f"{m.group(0)!r}: {what}" for m in pattern.finditer(body)]
    return found
