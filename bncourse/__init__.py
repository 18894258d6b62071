"""bncourse — the companion package of the Batch Normalization course.

Subpackages and modules (import the one you need; nothing heavy is imported here). ARCHITECTURE.md at the
root of the repository says which layer each belongs to and where a new piece goes.

* ``bncourse.numpy``     — BatchNorm in NumPy: forward returns a cache, backward consumes it
  (compact and step-by-step), and a ``BatchNorm`` layer with torch's conventions and state_dict.
* ``bncourse.torch``     — BatchNorm from plain tensor ops with an explicit backward:
  ``batch_norm`` and drop-in ``BatchNorm1d/2d/3d`` (CPU and CUDA), ``convert_batchnorm``,
  ``SyncBatchNorm`` (data-parallel, over ``torch.distributed``: gloo on CPU, NCCL on GPUs).
* ``bncourse.triton``    — the same ``batch_norm`` and modules as fused Triton kernels (optional: needs
  ``triton``; CUDA, or Triton's interpreter on CPU).
* ``bncourse.exercises`` — self-check questions: live ipywidgets and static HTML/JS from one definition.
* the experiment harness: ``bncourse.state`` (leave a model as found; is this a BN layer),
  ``bncourse.data``, ``bncourse.models``, ``bncourse.training``, ``bncourse.recorders``,
  ``bncourse.bn_statistics``, ``bncourse.plotting`` and ``bncourse.chapter`` (:func:`setup_chapter`).
* the chapters' machinery: ``bncourse.scaling`` (chapter 1), ``bncourse.shift`` (chapter 2),
  ``bncourse.conventions`` and ``bncourse.pitfalls`` (chapter 7), ``bncourse.landscape``,
  ``bncourse.normalizers`` and ``bncourse.smoothness`` (chapters 3 and 6),
  ``bncourse.distributed`` (chapter 7: gloo workers, local BN vs SyncBatchNorm).
"""

__version__ = "0.1.0"

__all__ = ["setup_chapter"]


def setup_chapter(threads: int = 1) -> None:
    """Thread counts and figure style of a chapter notebook: see :func:`bncourse.chapter.setup_chapter`."""
    from bncourse.chapter import setup_chapter as _setup_chapter

    _setup_chapter(threads)
