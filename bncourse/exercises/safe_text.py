"""Text from untrusted objects (a learner's result, exception or printed output), safe to put in a message.

Each function here returns a plain ``str`` whatever the object does: its ``__str__`` or ``__repr__`` may
raise or return something huge, and the text is capped with a note saying how much was cut. The results are
plain text, not markup: pass them through ``markup.literal`` before putting them into a feedback message.
"""
from __future__ import annotations

import reprlib

LIMIT = 300  # characters of any one learner-controlled fragment shown in a message

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxset = 3, 8, 8, 8, 8
_repr.maxstring = _repr.maxother = _repr.maxlong = LIMIT + 1


def cap(text: str, limit: int = LIMIT) -> str:
    """``text``, or its first ``limit`` characters and a note of how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit:,} more characters cut]"


def type_name(x: object) -> str:
    """The name of ``x``'s class (a ``str`` even when the class renamed itself to something odd)."""
    try:
        return cap(str.__str__(type.__getattribute__(type(x), "__name__")), 80)
    except Exception:  # a metaclass with an odd __name__
        return "object"


def _failed(x: object, method: str, exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return f"<a {type_name(x)} object whose {method} raised {type_name(exc)}>"


def safe_str(x: object, limit: int = LIMIT) -> str:
    """``str(x)``, capped; a description instead if ``str`` raises or does not return a ``str``."""
    try:
        text = str(x)
        if not isinstance(text, str):
            raise TypeError("__str__ returned a non-string")
        return cap(str.__str__(text), limit)  # a str subclass's own methods are not trusted either
    except BaseException as exc:  # noqa: BLE001 - anything a learner's __str__ raises is reported, not raised
        return _failed(x, "__str__", exc)


def safe_repr(x: object, limit: int = LIMIT) -> str:
    """``repr(x)``, capped (containers shortened without walking all of them); never raises."""
    try:
        text = _repr.repr(x)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned a non-string")
        return cap(str.__str__(text), limit)
    except BaseException as exc:  # noqa: BLE001
        return _failed(x, "__repr__", exc)


def exception_text(exc: BaseException, limit: int = LIMIT) -> str:
    """``"ValueError: message"`` (or only the type when the message is empty), capped; never raises."""
    name = type_name(exc)
    message = safe_str(exc, limit)
    return f"{name}: {message}" if message else name
