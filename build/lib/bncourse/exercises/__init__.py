"""Self-check questions for the course: one definition, three renderings.

* **live notebook**: displaying a question shows an ipywidget (``live_widgets``); code exercises have a
  *Check* button that runs the learner's function, found by name in the notebook at click time;
* **static website**: the same question as self-contained HTML/JS that checks answers in the browser
  without a kernel (``static_html``);
* **tests**: all grading is pure Python — ``q.grade(answer)`` and ``ex.check(fn)`` return a :class:`Feedback`.

Example::

    from bncourse.exercises import MultipleChoice, Numeric, CodeExercise, Case
    q = MultipleChoice(id="ch1-minmax", prompt="Min-max normalization maps training features into ...",
                       options=["$[0, 1]$", "mean 0, std 1"], answer=0, hint="Look at the formula.")
    q.grade(1).passed   # False
    q                   # in a notebook: the live widget (Jupyter) or the static quiz (website)
"""
from .code_exercise import Case, CodeExercise
from .feedback import Feedback
from .question import Question
from .quiz import MultipleChoice, Numeric

__all__ = ["MultipleChoice", "Numeric", "CodeExercise", "Case", "Feedback", "Question"]

# The public classes live in small submodules; present them (in docs and reprs) under the package name.
for _cls in (Case, CodeExercise, Feedback, MultipleChoice, Numeric, Question):
    _cls.__module__ = __name__
del _cls
