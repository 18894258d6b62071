"""The result of grading one answer: :class:`Feedback`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feedback:
    """What a learner is told after an answer.

    Attributes:
        passed: whether the answer is accepted.
        message: a self-contained explanation in the course's light markup (``$math$``, backticked code);
            never just "wrong": it says what is wrong and, where the definition has one, gives a hint.
        case: for code exercises, the label of the first failing case (``None`` otherwise or when all pass).
    """

    passed: bool
    message: str
    case: str | None = None

    def __str__(self) -> str:
        return ("PASS: " if self.passed else "FAIL: ") + self.message

    def __bool__(self) -> bool:  # ``if ex.check(fn): ...`` reads naturally
        return self.passed
