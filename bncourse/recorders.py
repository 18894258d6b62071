"""Recording what modules output during training, without changing the training run.

One family with one call convention, ``recorder(model, step, x=None, y=None)``, so a recorder serves
both places :func:`bncourse.training.train` calls out:

* as an evaluation hook (``train(..., hooks=[rec])``): called ``rec(model, step, x_eval)`` at each
  evaluation point, it records on the evaluation inputs, by default in eval mode;
* as a step callback (``train(..., step_callback=rec)``): called ``rec(model, step, xb, yb)`` after
  each optimizer step; give it a fixed batch ``x=`` (the change between records is then the change of
  the network, not of the data) and the steps to record at ``at=``.

Classes:

* :class:`ActivationRecorder` -- a reduction (default: the whole output) of one or several named
  modules' forward outputs;
* :class:`PercentileRecorder` -- percentiles of one unit (Ioffe & Szegedy's Fig. 1(b, c)).

:func:`module_outputs` is the forward pass they share. Every record runs inside
:func:`bncourse.state.preserved` (buffers, modes and the global RNG come back as they were) and with
activation noise frozen to one draw, so recording never perturbs the run it watches.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.normalizers import frozen_noise
from bncourse.state import as_model_input, preserved

__all__ = ["Hook", "module_outputs", "first_units", "ActivationRecorder", "PercentileRecorder", "MODES"]

ArrayLike = np.ndarray | torch.Tensor

#: The modes a recorder can run the forward pass in (``"current"`` = the model's own modes).
MODES = ("eval", "train", "current")


class Hook(Protocol):
    """What :func:`bncourse.training.train` calls: ``hook(model, step, x, y)``.

    As an evaluation hook ``x`` is the evaluation inputs (a tensor) and ``y`` is not passed; as a step
    callback ``x, y`` is the mini-batch of the step just taken.
    """

    def __call__(self, model: nn.Module, step: int, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> None: ...


@torch.no_grad()
def module_outputs(model: nn.Module, modules: Mapping[str, nn.Module], x: ArrayLike, *,
                   mode: str = "current") -> dict[str, torch.Tensor]:
    """Forward outputs of the named ``modules`` on ``x`` (N, ...), one forward pass of ``model``.

    Args:
        model: the network containing ``modules``.
        modules: name -> module to watch.
        x: a batch of inputs.
        mode: ``"eval"``, ``"train"`` or ``"current"`` (the model's modes as they are). Training mode
            includes activation noise, frozen to one draw.

    Returns:
        name -> the detached output tensor (its own shape, e.g. (N, C) or (N, C, H, W)). Parameters,
        buffers, modes and the global RNG are as before the call.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = [m.register_forward_hook(lambda _m, _i, out, name=name: captured[name].append(out))
               for name, m in modules.items()]
    try:
        with frozen_noise(model), preserved(model, params=False):
            if mode != "current":
                model.train(mode == "train")
            model(as_model_input(x, model))
    finally:
        for h in handles:
            h.remove()
    wrong = [f"module {name!r} ran {len(outs)} times" for name, outs in captured.items() if len(outs) != 1]
    if wrong:
        raise RuntimeError("; ".join(wrong) + " in one forward pass (expected once each): are the watched "
                           "modules part of this model?")
    return {name: outs[0].detach() for name, outs in captured.items()}


def _to_numpy(out: torch.Tensor) -> np.ndarray:
    return out.detach().cpu().numpy().copy()


def first_units(k: int) -> Callable[[torch.Tensor], np.ndarray]:
    """A reduction keeping the first ``k`` units: output (N, C, ...) -> array (N, k) of the flattened
    per-sample features."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    def reduce(out: torch.Tensor) -> np.ndarray:
        return _to_numpy(out.reshape(len(out), -1)[:, : int(k)])

    return reduce


class ActivationRecorder:
    """Records a summary of the forward outputs of one or several modules at chosen steps.

    Args:
        modules: the module to watch (e.g. an entry of ``bncourse.models.hidden_preactivations(model)``),
            or a mapping name -> module.
        reduce: ``output tensor -> value`` stored per module and record; default: the whole output as a
            NumPy array (memory grows with every record: pass a reduction such as :func:`first_units`
            for long runs).
        x: a fixed batch to record on; ``None`` = the inputs the caller passes (the evaluation inputs
            when used as a hook).
        at: the steps to record at; ``None`` = every call.
        mode: ``"eval"`` (default: what the evaluation hook sees), ``"train"`` or ``"current"`` (the
            model's mode during training: batch statistics and activation noise included).

    Attributes:
        steps: the steps recorded; records: name -> list of values, one per step; values: the list of
            the only module (when one module is watched).

    Use it as an evaluation hook, as a step callback (with ``x=``), or directly:
    ``rec.record(model, x, step=0)``.
    """

    def __init__(self, modules: nn.Module | Mapping[str, nn.Module],
                 reduce: Callable[[torch.Tensor], Any] | None = None, *,
                 x: ArrayLike | None = None, at: Iterable[int] | None = None, mode: str = "eval"):
        if isinstance(modules, nn.Module):
            modules = {"output": modules}
        if not modules:
            raise ValueError("no modules to watch")
        for name, m in modules.items():
            if not isinstance(m, nn.Module):
                raise TypeError(f"modules[{name!r}] must be an nn.Module, got {type(m).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.modules = dict(modules)
        self.reduce = reduce or _to_numpy
        self.x = x
        self.at = None if at is None else {int(s) for s in at}
        self.mode = mode
        self.steps: list[int] = []
        self.records: dict[str, list[Any]] = {name: [] for name in self.modules}

    @property
    def values(self) -> list[Any]:
        """The records of the only watched module."""
        if len(self.records) != 1:
            raise AttributeError(f"values needs one watched module, this recorder watches {list(self.records)}")
        return next(iter(self.records.values()))

    def record(self, model: nn.Module, x: ArrayLike, step: int) -> dict[str, Any]:
        """Run ``model(x)`` in the recorder's mode (the model is left as found) and store
        ``reduce(output)`` of every watched module for ``step``. Returns name -> stored value."""
        outs = module_outputs(model, self.modules, x, mode=self.mode)
        values = {name: self.reduce(out) for name, out in outs.items()}
        for name, value in values.items():
            self.records[name].append(value)
        self.steps.append(int(step))
        return values

    def __call__(self, model: nn.Module, step: int, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> None:
        if self.at is not None and int(step) not in self.at:
            return
        batch = self.x if self.x is not None else x
        if batch is None:
            raise ValueError("no inputs to record on: pass x= to the recorder or call it with inputs")
        self.record(model, batch, step)


class PercentileRecorder(ActivationRecorder):
    """Percentiles of one unit's values (e.g. the input of a sigmoid) over the recorded batch -- Ioffe &
    Szegedy Fig. 1(b, c).

    Args:
        module: module whose output is watched (``hidden_preactivations(model)[-1]`` = last hidden layer).
        unit: which feature (column / channel) to follow.
        q: percentiles in [0, 100], computed like ``np.percentile`` (linear interpolation) over the batch
            (and spatial positions, for (N, C, H, W) outputs).
        x, at, mode: as in :class:`ActivationRecorder`.

    Attributes:
        steps: list of steps; ``percentiles``: array (n_records, len(q)).
    """

    def __init__(self, module: nn.Module, unit: int = 0, q: Sequence[float] = (15, 50, 85), *,
                 x: ArrayLike | None = None, at: Iterable[int] | None = None, mode: str = "eval"):
        self.unit = int(unit)
        self.q = tuple(float(v) for v in q)
        if not all(0 <= v <= 100 for v in self.q):
            raise ValueError(f"percentiles must lie in [0, 100], got {self.q}")
        super().__init__(module, reduce=self._percentiles, x=x, at=at, mode=mode)

    def _percentiles(self, out: torch.Tensor) -> np.ndarray:
        if out.ndim < 2 or not 0 <= self.unit < out.shape[1]:
            raise IndexError(f"unit {self.unit} out of range for output of shape {tuple(out.shape)}")
        values = out[:, self.unit].detach().reshape(-1).double().cpu().numpy()
        return np.percentile(values, self.q)

    @property
    def percentiles(self) -> np.ndarray:
        """(n_records, len(q)) array of the recorded percentiles."""
        return np.asarray(self.values, dtype=float).reshape(len(self.values), len(self.q))

    def spread(self, low: int = 0, high: int = -1) -> np.ndarray:
        """Distance between two recorded percentiles (default: first and last of ``q``) at each record."""
        p = self.percentiles
        return p[:, high] - p[:, low]
