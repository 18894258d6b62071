"""``BatchNorm1d/2d/3d``: drop-in replacements for ``torch.nn.BatchNorm*d`` on :func:`batch_norm`.

One base class holds everything (like torch's ``_NormBase`` + ``_BatchNorm``); the subclasses only
say which input ranks they accept. The base derives from ``torch.nn.Module`` directly, so nothing of
torch's native BatchNorm is reused, while parameters, buffers, ``state_dict`` keys, ``_version = 2``,
``extra_repr``, ``momentum=None`` (cumulative average), ``track_running_stats=False`` and the
attribute-flip semantics are torch's.

Shapes: BatchNorm1d (N, C) or (N, C, L); BatchNorm2d (N, C, H, W); BatchNorm3d (N, C, D, H, W).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from .. import _checks
from .._modes import average_factor, batch_norm_mode
from .functional import batch_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class _BatchNorm(Module):
    """Common base: parameters, buffers, state_dict compatibility and the forward."""

    _version = 2
    _allowed_ranks: tuple[int, ...] = ()
    # the functional form the forward calls; subclasses over other kernels replace it
    _batch_norm = staticmethod(batch_norm)
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]
    num_features: int
    eps: float
    momentum: Optional[float]
    affine: bool
    track_running_stats: bool

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(torch.empty(num_features, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(num_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        _checks.check_input_rank(input.dim(), self._allowed_ranks)

    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "bias={use_bias}, track_running_stats={track_running_stats}".format(
                **self.__dict__, use_bias=self.bias is not None
            )
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Checkpoints before version 2 have no num_batches_tracked: default it (to ours, else 0).
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = (
                    self.num_batches_tracked
                    if self.num_batches_tracked is not None
                    and self.num_batches_tracked.device != torch.device("meta")
                    else torch.tensor(0, dtype=torch.long)
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, input: Tensor) -> Tensor:
        """``input`` ``(N, C, *spatial)`` -> output of the same shape (see the subclass for the ranks)."""
        self._check_input_dim(input)
        return self._batch_norm(input, *self._batch_norm_args())

    def _batch_norm_args(self) -> tuple:
        """Count this batch and return the arguments of :func:`batch_norm` after ``input``.

        ``(running_mean, running_var, weight, bias, training, momentum, eps)``, as torch's module passes them.
        """
        mode = batch_norm_mode(self.training, self.track_running_stats,
                               self.running_mean is not None or self.running_var is not None,
                               self.num_batches_tracked is not None)
        if mode.count_batch:
            self.num_batches_tracked.add_(1)
        factor = average_factor(self.momentum, self.num_batches_tracked if mode.count_batch else None)
        return (
            self.running_mean if mode.pass_buffers else None,
            self.running_var if mode.pass_buffers else None,
            self.weight,
            self.bias,
            mode.use_batch_stats,
            factor,
            self.eps,
        )


class BatchNorm1d(_BatchNorm):
    """Drop-in ``torch.nn.BatchNorm1d``: input (N, C) or (N, C, L)."""

    _allowed_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Drop-in ``torch.nn.BatchNorm2d``: input (N, C, H, W)."""

    _allowed_ranks = (4,)


class BatchNorm3d(_BatchNorm):
    """Drop-in ``torch.nn.BatchNorm3d``: input (N, C, D, H, W)."""

    _allowed_ranks = (5,)
