"""Undo what a learner's code patched while it was being checked.

A learner's function runs in the same interpreter as the checker, so it could replace what the checker relies
on: ``bncourse.exercises.compare.compare``, ``numpy.isclose``, ``builtins.isinstance``, a method of
:class:`Feedback`, an attribute of the exercise itself... :class:`Snapshot` records the namespaces the
checker uses before the learner's code runs and puts every changed or deleted entry back afterwards; the
checker restores right after each call, *before* it compares the result, so a patch cannot make the check it
was made in pass either.

What it cannot undo: state outside these namespaces (e.g. a NumPy array the learner reached and modified in
place, or ``numpy``'s C internals), and patches made *later* by a learner thread that kept running after its
time limit (see ``sandbox``): those are reported as still running.
"""
from __future__ import annotations

import builtins
import copy
import ctypes
import inspect
import io
import itertools
import linecache
import math
import numbers
import operator
import re
import reprlib
import sys
import threading
import time
import traceback
from types import ModuleType

import numpy

_STDLIB: tuple[ModuleType, ...] = (builtins, copy, ctypes, inspect, io, itertools, linecache, math, numbers,
                                   operator, re, reprlib, threading, time, traceback)
_PACKAGE = "bncourse.exercises"
# Entries that a library replaces when one of its modules is first imported, which a learner's call may do
# legitimately (``torch.func`` imports ``torch._dynamo``, which wraps ``torch.manual_seed``): kept when that
# module appeared during the call.
_IMPORT_PATCHES = {("torch", "manual_seed"): "torch._dynamo"}


def _namespaces() -> list[tuple[object, bool]]:
    """``(namespace, own)`` pairs to guard: modules, and classes (``own``: where entries added during a check
    are removed too; not for modules, where a lazily imported submodule legitimately appears)."""
    found: list[tuple[object, bool]] = [(m, False) for m in _STDLIB]
    found += [(numpy, False), (numpy.ma, False), (numpy.ma.MaskedArray, True)]
    torch = sys.modules.get("torch")
    if torch is not None:  # never imported here: guarded only when the session already uses it
        found += [(torch, False), (getattr(torch, "Tensor", None), True)]
    for name, module in list(sys.modules.items()):
        if module is None or not (name == _PACKAGE or name.startswith(_PACKAGE + ".")):
            continue
        found.append((module, False))
        for value in list(vars(module).values()):
            if isinstance(value, type) and getattr(value, "__module__", "").startswith(_PACKAGE):
                found.append((value, True))
    seen: set[int] = set()
    unique = []
    for ns, own in found:
        if ns is not None and id(ns) not in seen:
            seen.add(id(ns))
            unique.append((ns, own))
    return unique


class Snapshot:
    """The entries of the guarded namespaces (and of ``extra`` objects' ``__dict__``), restorable."""

    def __init__(self, *extra: object) -> None:
        self._modules = set(sys.modules)
        self._saved: list[tuple[object, bool, dict[str, object]]] = [
            (ns, own, dict(vars(ns))) for ns, own in _namespaces()]
        self._saved += [(obj, True, dict(vars(obj))) for obj in extra]

    def restore(self) -> list[str]:
        """Put back every entry that was changed or deleted; remove entries added to our own classes and to
        ``extra`` objects. Returns what was undone, as ``"module.name"`` strings (for tests and messages)."""
        undone: list[str] = []
        for ns, own, saved in self._saved:
            current = vars(ns)
            label = getattr(ns, "__name__", type(ns).__name__)
            for key, value in saved.items():
                if key not in current or current[key] is not value:
                    importer = _IMPORT_PATCHES.get((label, key))
                    if importer and key in current and importer in sys.modules and importer not in self._modules:
                        saved[key] = current[key]  # the library's own import-time change: keep it
                        continue
                    _set(ns, key, value)
                    undone.append(f"{label}.{key}")
            if own:
                for key in [k for k in current if k not in saved]:
                    _delete(ns, key)
                    undone.append(f"{label}.{key}")
        return undone


def _set(ns: object, key: str, value: object) -> None:
    if isinstance(ns, ModuleType) or not isinstance(ns, type):
        vars(ns)[key] = value  # a module's or instance's __dict__ is a plain dict
    else:
        type.__setattr__(ns, key, value)  # a class's is read-only: go through type's own setattr


def _delete(ns: object, key: str) -> None:
    if isinstance(ns, type):
        type.__delattr__(ns, key)
    else:
        vars(ns).pop(key, None)
