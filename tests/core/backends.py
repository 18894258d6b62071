"""One interface over the BatchNorm implementations that the backend suite compares with torch.nn.

A backend takes and returns torch tensors on its ``device``, so that a test builds the reference
with torch.nn and compares without knowing which implementation ran:

* ``module(name, args, kwargs, dtype)``: the layer for ``torch.nn.<name>(*args, **kwargs)``;
* ``load_state(layer, state_dict)`` / ``state(layer)``: torch's keys, as tensors;
* ``step(layer, x, dy, training)``: ``(y, dx, dweight, dbias)`` of one forward + backward;
* ``functional(x, rm, rv, w, b, dy, kwargs)``: one result ``(y, dx, dweight, dbias)`` per backward
  the backend has (NumPy: compact and staged), the running buffers ``rm``/``rv`` updated in place;
* ``forward(x, rm, rv, w, b, kwargs)``: the functional forward alone, for the error tests, with
  ``skip_reason`` (arguments the backend does not take, by design) and ``error_style`` (how it
  spells torch's message).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

import bncourse.numpy as bnp
import bncourse.torch as bt

_OURS = {"BatchNorm1d": bt.BatchNorm1d, "BatchNorm2d": bt.BatchNorm2d, "BatchNorm3d": bt.BatchNorm3d}
_NP_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def _t(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.asarray(a))


@dataclass(frozen=True)
class NumpyBackend:
    """``bncourse.numpy``: the ``BatchNorm`` layer (the tuned path) and the plain functions."""

    name: str = "numpy"
    device: str = "cpu"
    min_rank: int = 2          # the NumPy path refuses inputs below 2-D (documented)

    def module(self, name: str, args: tuple, kwargs: dict, dtype: torch.dtype) -> bnp.BatchNorm:
        return bnp.BatchNorm(*args, **kwargs, dtype=_NP_DTYPES[dtype])

    def load_state(self, layer: bnp.BatchNorm, state_dict: dict) -> None:
        layer.load_state_dict({k: _np(v) for k, v in state_dict.items()})

    def state(self, layer: bnp.BatchNorm) -> dict:
        return {k: _t(v) for k, v in layer.state_dict().items()}

    def step(self, layer: bnp.BatchNorm, x: torch.Tensor, dy: torch.Tensor, training: bool) -> tuple:
        layer.train(training)
        y = layer(_np(x))
        dx = layer.backward(_np(dy))
        return _t(y), _t(dx), _t(layer.grad_weight), _t(layer.grad_bias)

    def functional(self, x, rm, rv, w, b, dy, kwargs) -> list[tuple]:
        training = kwargs.get("training", False)
        rm_n, rv_n = _np(rm), _np(rv)
        y, cache = bnp.batchnorm_forward(_np(x), _np(w), _np(b), rm_n, rv_n, training=training,
                                         momentum=kwargs.get("momentum", 0.1),
                                         eps=kwargs.get("eps", 1e-5))
        for buffer, value in ((rm, rm_n), (rv, rv_n)):
            if buffer is not None:
                buffer.copy_(torch.from_numpy(value))
        return [(_t(y),) + tuple(_t(g) for g in backward(_np(dy), cache))
                for backward in (bnp.batchnorm_backward, bnp.batchnorm_backward_staged)]

    def forward(self, x, rm, rv, w, b, kwargs):
        return bnp.batchnorm_forward(_np(x), _np(w), _np(b), _np(rm), _np(rv),
                                     training=kwargs.get("training", False),
                                     momentum=kwargs.get("momentum", 0.1), eps=kwargs.get("eps", 1e-5))

    def skip_reason(self, x, rm, rv, w, b) -> str | None:
        if x.dim() < 2 or x.numel() == 0:
            return ("NumPy validates rank < 2 and empty batches itself (torch returns early or "
                    "reads past the shape)")
        if any(t is not None and t.dtype == torch.bfloat16 for t in (x, rm, rv, w, b)):
            return "NumPy has no bfloat16"
        if any(t is not None and t.dim() != 1 for t in (rm, rv, w, b)):
            return "NumPy requires 1-D parameters (ValueError)"
        return None

    @staticmethod
    def error_style(message: str) -> str:
        """torch.Size([1, 3]) -> (1, 3), the NumPy path's spelling."""
        return re.sub(r"torch\.Size\(\[([^\]]*)\]\)", r"(\1)", message)


@dataclass(frozen=True)
class TorchBackend:
    """``bncourse.torch``: ``BatchNorm1d/2d/3d`` and ``batch_norm`` on ``device``."""

    name: str
    device: str
    min_rank: int = 0

    def module(self, name: str, args: tuple, kwargs: dict, dtype: torch.dtype) -> torch.nn.Module:
        return _OURS[name](*args, **kwargs, device=self.device, dtype=dtype)

    def load_state(self, layer: torch.nn.Module, state_dict: dict) -> None:
        layer.load_state_dict(state_dict)

    def state(self, layer: torch.nn.Module) -> dict:
        return dict(layer.state_dict())

    def step(self, layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor, training: bool) -> tuple:
        layer.train(training)
        layer.zero_grad(set_to_none=True)
        x = x.detach().clone().requires_grad_()
        y = layer(x)
        y.backward(dy)
        grad = lambda p: None if p is None else p.grad  # noqa: E731
        return y.detach(), x.grad, grad(layer.weight), grad(layer.bias)

    def functional(self, x, rm, rv, w, b, dy, kwargs) -> list[tuple]:
        leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, b)]
        y = bt.batch_norm(leaves[0], rm, rv, leaves[1], leaves[2], **kwargs)
        present = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(y, present, dy))
        return [(y.detach(),) + tuple(None if t is None else next(grads) for t in leaves)]

    def forward(self, x, rm, rv, w, b, kwargs):
        return bt.batch_norm(x, rm, rv, w, b, **kwargs)

    def skip_reason(self, x, rm, rv, w, b) -> str | None:
        if self.device != "cpu":
            return "the error wording compared is the CPU kernel's"
        return None

    @staticmethod
    def error_style(message: str) -> str:
        return message


BACKENDS = {"numpy": NumpyBackend(), "torch-cpu": TorchBackend("torch-cpu", "cpu"),
            "torch-cuda": TorchBackend("torch-cuda", "cuda")}
