"""``BatchNorm``: a NumPy layer with the state and conventions of ``torch.nn.BatchNorm*d``."""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional

import numpy as np

from bncourse import _checks
from bncourse._modes import average_factor, batch_norm_mode
from bncourse.numpy import _fast

__all__ = ["BatchNorm", "IncompatibleKeys"]


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns, like torch's ``_IncompatibleKeys``."""

    missing_keys: List[str]
    unexpected_keys: List[str]


class BatchNorm:
    """Batch normalisation over dimension 1 of an ``(N, C, *spatial)`` input (any rank >= 2).

    One class stands for ``torch.nn.BatchNorm1d/2d/3d``: same constructor, same parameters and
    buffers (NumPy arrays, ``None`` where torch has ``None``), same train/eval rules, same
    ``state_dict`` keys. ``forward`` keeps a cache; ``backward(dy)`` returns ``dx`` and stores
    ``grad_weight`` / ``grad_bias`` (overwritten, not accumulated).

    Args:
        num_features: C, the number of channels.
        eps: added to the variance inside the square root.
        momentum: weight of the new batch statistic in the running averages; ``None`` for a
            cumulative average (factor ``1 / num_batches_tracked``).
        affine: learnable ``weight`` (ones) and ``bias`` (zeros); both None when False.
        track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
            ``num_batches_tracked`` (0-d int64); when False they are None and batch statistics
            are used in evaluation too.
        bias: keyword-only, like torch 2.13: ``bias=False`` keeps ``weight`` but no ``bias``.
        dtype: of the parameters and running buffers (float32 like torch by default).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
        dtype: type = np.float32,
    ) -> None:
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight: Optional[np.ndarray] = np.ones(num_features, dtype) if affine else None
        self.bias: Optional[np.ndarray] = np.zeros(num_features, dtype) if affine and bias else None
        self.running_mean: Optional[np.ndarray] = None
        self.running_var: Optional[np.ndarray] = None
        self.num_batches_tracked: Optional[np.ndarray] = None
        if track_running_stats:
            self.running_mean = np.zeros(num_features, dtype)
            self.running_var = np.ones(num_features, dtype)
            self.num_batches_tracked = np.array(0, dtype=np.int64)
        self.training = True
        self.grad_weight: Optional[np.ndarray] = None
        self.grad_bias: Optional[np.ndarray] = None
        self._cache: Optional[_fast.TunedCache] = None

    def __repr__(self) -> str:
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats})")

    # --- modes -------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "BatchNorm":
        """Training mode (batch statistics, buffers updated) when ``mode``, else evaluation."""
        self.training = bool(mode)
        return self

    def eval(self) -> "BatchNorm":
        """Evaluation mode: normalise with the running statistics (if tracked)."""
        return self.train(False)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, counter 0 (torch's ``reset_running_stats``)."""
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    # --- forward / backward ------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x``: ``(N, C, *spatial)`` -> ``y`` of the same shape and dtype."""
        if isinstance(x, np.ndarray):
            _checks.check_input_rank(x.ndim)
        mode = batch_norm_mode(self.training, self.track_running_stats,
                               self.running_mean is not None or self.running_var is not None,
                               self.num_batches_tracked is not None)
        if mode.count_batch:        # before the batch is checked, as in torch
            self.num_batches_tracked += 1
        factor = average_factor(self.momentum, self.num_batches_tracked if mode.count_batch else None)
        y, self._cache = _fast.forward(
            x, self.weight, self.bias,
            self.running_mean if mode.pass_buffers else None,
            self.running_var if mode.pass_buffers else None,
            training=mode.use_batch_stats, momentum=factor, eps=self.eps,
            reuse=self._cache,        # the previous step's cache is dead: recycle its buffer
        )
        return y

    __call__ = forward

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """``dy``: ``dL/dy`` of the last ``forward``. Returns ``dL/dx``; sets ``grad_weight``/``grad_bias``."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dx, self.grad_weight, self.grad_bias = _fast.backward(dy, self._cache)
        return dx

    # --- state_dict --------------------------------------------------------------------------
    def _state(self) -> Dict[str, Optional[np.ndarray]]:
        return {"weight": self.weight, "bias": self.bias, "running_mean": self.running_mean,
                "running_var": self.running_var, "num_batches_tracked": self.num_batches_tracked}

    def state_dict(self) -> Dict[str, np.ndarray]:
        """torch's keys and order; copies (a snapshot, unlike torch's shared tensors)."""
        return {k: v.copy() for k, v in self._state().items() if v is not None}

    def load_state_dict(self, state_dict: Dict[str, object], strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing arrays (cast to their dtype), like ``torch.nn.Module``.

        Accepts NumPy arrays or anything ``np.asarray`` takes (e.g. ``{k: v.numpy() for k, v in
        torch_module.state_dict().items()}``). A missing ``num_batches_tracked`` keeps the current
        value (torch's rule for checkpoints without version metadata). ``strict=True`` raises
        ``RuntimeError`` listing missing/unexpected keys and size mismatches, as torch does.
        """
        own = {k: v for k, v in self._state().items() if v is not None}
        missing = [k for k in own if k not in state_dict and k != "num_batches_tracked"]
        unexpected = [k for k in state_dict if k not in own]
        errors: List[str] = []
        if strict:
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        values = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != target.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape "
                    f"{_checks.format_size(value.shape, torch_style=False)} from checkpoint, "
                    f"the shape in current model is {_checks.format_size(target.shape, torch_style=False)}.")
                continue
            values[key] = value
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for BatchNorm:\n\t" + "\n\t".join(errors))
        for key, value in values.items():
            own[key][...] = value
        return IncompatibleKeys(missing, unexpected)
