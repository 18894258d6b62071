"""Self-check questions for the course: one definition, three renderings.

* **live notebook**: displaying a question shows an ipywidget (``live_widgets``); code exercises have a
  *Check* button that runs the learner's function, found by name in the notebook at click time;
* **static website**: the same question as self-contained HTML/JS that checks answers in the browser
  without a kernel (``static_html``);
* **tests**: all grading is pure Python — ``q.grade(answer)`` and ``ex.check(fn)`` return a :class:`Feedback`.

Question texts use a light markup (``$math$``, ```code```, ``*emphasis*``, ``**strong**``; see ``markup``).
A typed number is read by one grammar, in Python and in the website's JavaScript alike (``numeric_answer``).

What the checker guarantees about a learner's code (``CodeExercise.check``; tested in
``tests/test_exercises_robustness.py``):

* ``check()`` and ``grade()`` never raise, whatever the function returns, raises or prints: results whose
  ``__str__``, ``__repr__``, ``__eq__`` or ``astype`` raise, masked arrays, ndarray subclasses, object arrays,
  text with ``$``, backticks or HTML. Every learner-controlled piece of a message is escaped and capped
  (``safe_text``), with a note saying how much was cut.
* What the function prints is captured (``sandbox``) and quoted briefly in the message, not streamed.
* Whatever the function patches in the checker's namespaces (``compare``, NumPy, builtins, the exercise
  object...) is undone after the call, before its result is compared (``guard``).
* Limits, honestly: the function runs in a thread with a time limit. A pure-Python loop is stopped at the
  limit; a thread inside one long C call can only stop when the call returns, and a C call that holds the GIL
  (a huge integer power, a pathological regular expression) blocks the checker itself until it ends. The
  message then reports the time the call took against the limit, and the check fails. A learner's code runs
  with the notebook's full rights: the checker guards against mistakes and casual tampering, not against
  deliberate attacks (``os._exit``, ``ctypes``, editing NumPy's C internals).

Example::

    from bncourse.exercises import MultipleChoice, Numeric, CodeExercise, Case
    q = MultipleChoice(id="ch1-minmax", prompt="Min-max normalization maps training features into ...",
                       options=["$[0, 1]$", "mean 0, std 1"], answer=0, hint="Look at the formula.")
    q.grade(1).passed   # False
    q                   # in a notebook: the live widget (Jupyter) or the static quiz (website)
"""
from . import renderers, static_html
from .code_exercise import Case, CodeExercise
from .feedback import Feedback
from .question import Question
from .quiz import MultipleChoice, Numeric

# The renderer modules register themselves per question class when imported (see ``renderers``).
try:
    from . import live_widgets  # noqa: F401
except ImportError as exc:  # no ipywidgets: the static rendering and all grading still work
    renderers.live_unavailable = f"{exc} (install ipywidgets)"

__all__ = ["MultipleChoice", "Numeric", "CodeExercise", "Case", "Feedback", "Question"]

# The public classes live in small submodules; present them (in docs and reprs) under the package name.
for _cls in (Case, CodeExercise, Feedback, MultipleChoice, Numeric, Question):
    _cls.__module__ = __name__
del _cls
