"""Run a learner's function in a thread with a time limit, capturing what happened.

A function that does not return within the limit is abandoned: the checker reports the timeout and the kernel
stays responsive. The abandoned *daemon* thread is then asked to stop by raising an exception inside it
(``PyThreadState_SetAsyncExc``), which ends pure-Python loops; a thread stuck inside one long C call (a huge
NumPy operation, ``time.sleep``) only stops when that call returns. It never keeps the process alive at exit.
"""
from __future__ import annotations

import ctypes
import linecache
import threading
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable


class LearnerTimeout(BaseException):
    """Raised inside an abandoned learner thread to stop it (BaseException: a bare ``except Exception`` in
    the learner's code does not swallow it)."""


@dataclass
class Outcome:
    """What calling the learner's function produced."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    stopped: bool = True  # after a timeout: whether the thread could be stopped
    error_line: str | None = None  # "line 7: y = x.mean(axis=2)" in the learner's code, if found


def _error_line(tb: TracebackType | None, fn: Callable) -> str | None:
    """The deepest traceback line inside ``fn``'s own source file (a notebook cell), else the deepest line."""
    code = getattr(fn, "__code__", None)
    own = code.co_filename if code is not None else None
    frames = traceback.extract_tb(tb)
    if not frames:
        return None
    mine = [f for f in frames if f.filename == own] or frames[-1:]
    f = mine[-1]
    text = (f.line or linecache.getline(f.filename, f.lineno or 0)).strip()
    where = f"line {f.lineno}" if own and f.filename == own else f"line {f.lineno} of {f.filename}"
    return f"{where}: {text}" if text else where


def call_with_timeout(fn: Callable, args: tuple, kwargs: dict, timeout: float) -> Outcome:
    """Call ``fn(*args, **kwargs)`` in a daemon thread; give up after ``timeout`` seconds."""
    out = Outcome()

    def target() -> None:
        try:
            out.value = fn(*args, **kwargs)
        except LearnerTimeout:
            pass
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from learner code are reported too
            out.error = exc
            out.error_line = _error_line(exc.__traceback__, fn)

    thread = threading.Thread(target=target, name="bncourse-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        out.timed_out = True
        if thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(LearnerTimeout))
        thread.join(0.5)
        out.stopped = not thread.is_alive()
    return out
