"""Run a learner's function in a thread with a time limit, capturing what happened and what it printed.

A function that does not return within the limit is abandoned: the checker reports the timeout and the kernel
stays responsive. The abandoned *daemon* thread is then asked to stop by raising an exception inside it
(``PyThreadState_SetAsyncExc``), which ends pure-Python loops. What a thread cannot stop: an exception can only
be delivered between two Python bytecodes, so a thread inside one long C call (a huge NumPy operation,
``time.sleep``) only stops when that call returns; and a C call that *holds the GIL* (a big-integer power,
a pathological regular expression) blocks the whole interpreter, the checker included, until it ends. The time
the call really took is measured and reported against the limit, so such a call still fails the check when it
ends. The thread never keeps the process alive at exit.

What the function prints (to ``sys.stdout`` or ``sys.stderr``, warnings included) while it runs is captured,
up to :data:`PRINT_LIMIT` characters, instead of streaming into the notebook; the checker shows the start of it.
Output printed by the thread *after* it was abandoned goes to the notebook as usual.
"""
from __future__ import annotations

import ctypes
import linecache
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

PRINT_LIMIT = 2000  # characters of printed output kept per call


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
    finished: bool = False  # whether the call ended by itself (returned or raised), however long it took
    error_line: str | None = None  # "line 7: y = x.mean(axis=2)" in the learner's code, if found
    elapsed: float = 0.0  # seconds the call ran (until it returned, or until it was abandoned)
    printed: str = ""  # the first PRINT_LIMIT characters it printed
    printed_chars: int = 0  # how many characters it printed in all


class _Capture:
    """Stands in for ``sys.stdout``/``sys.stderr`` during a call: keeps what the learner's thread writes (up
    to :data:`PRINT_LIMIT` characters, counting the rest) and passes every other thread's writes through."""

    def __init__(self, original: Any, sink: Outcome) -> None:
        self.original, self.sink = original, sink
        self.ident: int | None = None  # the learner's thread, set by the thread itself before the call

    def write(self, text: Any) -> int:
        if threading.get_ident() != self.ident:
            return self.original.write(text)
        text = text if isinstance(text, str) else str(text)
        room = PRINT_LIMIT - len(self.sink.printed)
        if room > 0:
            self.sink.printed += text[:room]
        self.sink.printed_chars += len(text)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() != self.ident:
            self.original.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty... are the real stream's
        return getattr(self.original, name)


def _error_line(tb: TracebackType | None, fn: Callable) -> str | None:
    """The deepest traceback line inside ``fn``'s own source file (a notebook cell), else the deepest line."""
    try:
        return _find_error_line(tb, fn)
    except Exception:  # an odd function object or traceback: no line, rather than a crash
        return None


def _find_error_line(tb: TracebackType | None, fn: Callable) -> str | None:
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
    """Call ``fn(*args, **kwargs)`` in a daemon thread, capturing its output; give up after ``timeout`` seconds.

    ``timed_out`` is set when the call was abandoned, and also when it returned but took longer than
    ``timeout`` (a C call holding the GIL cannot be abandoned earlier); ``elapsed`` says how long it ran.
    """
    out = Outcome()
    stdout, stderr = _Capture(sys.stdout, out), _Capture(sys.stderr, out)
    times = {"start": time.perf_counter(), "end": None}

    def target() -> None:
        stdout.ident = stderr.ident = threading.get_ident()
        times["start"] = time.perf_counter()
        try:
            out.value = fn(*args, **kwargs)
        except LearnerTimeout:
            pass
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from learner code are reported too
            out.error = exc
            out.error_line = _error_line(exc.__traceback__, fn)
        finally:
            times["end"] = time.perf_counter()

    thread = threading.Thread(target=target, name="bncourse-check", daemon=True)
    sys.stdout, sys.stderr = stdout, stderr
    try:
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            out.timed_out = True
            out.elapsed = time.perf_counter() - times["start"]
            if thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                           ctypes.py_object(LearnerTimeout))
            thread.join(0.5)
            out.stopped = not thread.is_alive()
        else:
            out.finished = True
            out.elapsed = (times["end"] or time.perf_counter()) - times["start"]
            out.timed_out = out.elapsed > timeout
    finally:
        sys.stdout, sys.stderr = stdout.original, stderr.original
    return out
