"""bncourse — the companion package of the Batch Normalization course.

Subpackages and modules (import the one you need; nothing heavy is imported here):

* ``bncourse.numpy``     — BatchNorm in NumPy: forward returns a cache, backward consumes it
  (compact and step-by-step), and a ``BatchNorm`` layer with torch's conventions and state_dict.
* ``bncourse.torch``     — BatchNorm from plain tensor ops with an explicit backward:
  ``batch_norm`` and drop-in ``BatchNorm1d/2d/3d`` (CPU and CUDA), ``convert_batchnorm``.
* ``bncourse.exercises`` — self-check questions: live ipywidgets and static HTML/JS from one definition.
* ``bncourse.data``, ``bncourse.models``, ``bncourse.training``, ``bncourse.plotting`` — the data
  sources (offline) and the experiment harness the chapters run on.
* ``bncourse.scaling`` (chapter 1), ``bncourse.shift`` (chapter 2), ``bncourse.conventions`` and
  ``bncourse.pitfalls`` (chapter 4), ``bncourse.landscape`` and ``bncourse.normalizers`` (chapter 6) —
  the machinery behind each chapter's experiments.
"""

__version__ = "0.1.0"
