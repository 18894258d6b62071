"""The one grammar of typed numeric answers, implemented twice: in Python (the grader) and in JavaScript (the
website's quiz). Both implementations live here, side by side, and ``tests/data/numeric_answers.json`` holds
the inputs that both are tested on (the Python one in ``tests/test_exercises.py``, the JavaScript one in
headless Chromium in ``tests/test_site.py``).

The grammar, in order:

1. Line breaks (CR, LF) are removed, as a browser's one-line text box removes them.
2. ``SPACE`` is space, tab, no-break space (U+00A0), thin space (U+2009) or narrow no-break space (U+202F);
   no other character counts as space. Input made only of spaces is *empty*.
3. ``NUMBER`` is an optional sign (``+``, ``-`` or the typeset minus U+2212), ASCII digits with an optional
   decimal point (``3``, ``3.``, ``3.5``, ``.5``) and an optional exponent (``e``/``E``, optional sign,
   digits). No ``inf``, ``nan``, digit separators (``1_000``, ``1,000``, ``1 000``) or decimal comma (``0,5``).
4. ``ANSWER`` is ``SPACE* NUMBER (SPACE* "/" SPACE* NUMBER)? SPACE* REST SPACE*``: a number or a fraction
   of two numbers, then anything (``REST``).
5. ``REST`` must be empty or exactly the question's unit (case-sensitive; ``0.15s`` and ``0.15 s`` both
   count). Otherwise the answer is in the *wrong unit* if the question has a unit and ``REST`` starts like one
   (a letter, ``%``, ``°``, ``µ`` or ``μ``), else it is *not a number*.
6. The value is ``NUMBER`` (divided by the second ``NUMBER``) in IEEE double precision, each literal
   correctly rounded; a zero denominator or a non-finite value is *not a number*.
7. Graded: right when ``|value - answer| <= slack``; otherwise too high or too low.

The learner's input is echoed in messages with line breaks removed, ``SPACE`` stripped at both ends and
at most :data:`ECHO_MAX` characters (code points), longer input cut with a final ``…``.
"""
from __future__ import annotations

import math
import re

SPACE = "[ \t\u00a0\u2009\u202f]"
SIGN = "[+\\-\u2212]"
# The regular expressions use only syntax that Python's ``re`` and JavaScript's ``RegExp`` read alike.
NUMBER_RE = f"{SIGN}?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE]{SIGN}?[0-9]+)?"
ANSWER_RE = f"^{SPACE}*({NUMBER_RE})(?:{SPACE}*/{SPACE}*({NUMBER_RE}))?{SPACE}*([\\s\\S]*?){SPACE}*$"
EMPTY_RE = f"^{SPACE}*$"
TRIM_RE = f"^{SPACE}+|{SPACE}+$"
UNIT_START_RE = "^[A-Za-z%\u00b0\u00b5\u03bc]"
LINE_BREAKS_RE = "[\r\n]"
ECHO_MAX = 80

_answer = re.compile(ANSWER_RE)
_empty = re.compile(EMPTY_RE)
_trim = re.compile(TRIM_RE)
_unit_start = re.compile(UNIT_START_RE)
_line_breaks = re.compile(LINE_BREAKS_RE)


def cut(text: str, limit: int = ECHO_MAX) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 1`` and ``…``."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def echo(text: str) -> str:
    """The learner's input as messages quote it (rule above)."""
    return cut(_trim.sub("", _line_breaks.sub("", text)))


def _number(literal: str) -> float:
    return float(literal.replace("\u2212", "-"))


def parse_answer(text: str, units: str | None) -> tuple[str, float | str]:
    """``("ok", value)``, ``("empty", "")``, ``("nan", echo)`` or ``("unit", rest)`` for a typed answer."""
    text = _line_breaks.sub("", text)
    if _empty.match(text):
        return "empty", ""
    m = _answer.match(text)
    if not m:
        return "nan", echo(text)
    num, den, rest = m.group(1), m.group(2), m.group(3)
    if rest and rest != units:
        if units and _unit_start.match(rest):
            return "unit", cut(rest)
        return "nan", echo(text)
    value = _number(num)
    if den is not None:
        d = _number(den)
        if d == 0:
            return "nan", echo(text)
        value /= d
    if not math.isfinite(value):
        return "nan", echo(text)
    return "ok", value


def verdict(text: str, answer: float, slack: float, units: str | None) -> str:
    """``right``, ``high``, ``low``, or the parse failure (``empty``, ``nan``, ``unit``)."""
    key, value = parse_answer(text, units)
    if key != "ok":
        return key
    assert isinstance(value, float)
    if abs(value - answer) <= slack:
        return "right"
    return "high" if value > answer else "low"


# The same grammar in JavaScript (functions on ``window``, defined once per page by the first quiz).
# ``g`` is the object :func:`js_grammar` returns, embedded in each numeric quiz's JSON data; the parse result
# carries the echoed input as a third element.
JS = r"""
window.bncourseCut=function(s,limit){var cps=Array.from(s);return cps.length<=limit?s:cps.slice(0,limit-1).join('')+'\u2026';};
window.bncourseParseAnswer=function(raw,units,g){
  var text=String(raw).replace(new RegExp(g.line_breaks,'g'),'');
  var echo=bncourseCut(text.replace(new RegExp(g.trim,'g'),''),g.echo_max);
  if(new RegExp(g.empty).test(text)){return ['empty','',echo];}
  var m=new RegExp(g.answer).exec(text);
  if(!m){return ['nan',echo,echo];}
  var rest=m[3];
  if(rest&&rest!==units){
    if(units&&new RegExp(g.unit_start).test(rest)){return ['unit',bncourseCut(rest,g.echo_max),echo];}
    return ['nan',echo,echo];
  }
  var v=parseFloat(m[1].replace(/\u2212/g,'-'));
  if(m[2]!==undefined){var d=parseFloat(m[2].replace(/\u2212/g,'-'));if(d===0){return ['nan',echo,echo];}v=v/d;}
  if(!isFinite(v)){return ['nan',echo,echo];}
  return ['ok',v,echo];
};
window.bncourseVerdict=function(raw,answer,slack,units,g){
  var p=bncourseParseAnswer(raw,units,g);
  if(p[0]!=='ok'){return p[0];}
  if(Math.abs(p[1]-answer)<=slack){return 'right';}
  return p[1]>answer?'high':'low';
};
"""


def js_grammar() -> dict[str, object]:
    """The grammar's regular expressions and limits, for the JavaScript implementation."""
    return {"answer": ANSWER_RE, "empty": EMPTY_RE, "trim": TRIM_RE, "unit_start": UNIT_START_RE,
            "line_breaks": LINE_BREAKS_RE, "echo_max": ECHO_MAX}
