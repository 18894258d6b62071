"""Normalization variants used by the smoothness chapter (Santurkar et al. 2018).

* :class:`ActivationNoise` -- the paper's per-unit, per-step "distributional shift" noise
  ``a <- s * a + m`` (Appendix A.2.1), active only in training mode.  Used alone it is the
  "standard network + the same noise" control.
* :class:`NoisyBatchNorm1d` -- ``torch.nn.BatchNorm1d`` followed by :class:`ActivationNoise`
  ("noisy BatchNorm"): the layer inputs downstream are *less* stable than without BN.
* :class:`LpNorm1d` -- "fix the first moment as BN does, then divide by the batch average of the
  l_p norm" for p = 1, 2, inf (Sec. 3.3).
* :func:`frozen_noise` -- a context manager that makes every :class:`ActivationNoise` inside a
  model reuse one draw, so that a measurement (line search, ICS) sees one fixed landscape.

All layers take ``(N, C)`` or ``(N, C, L)`` inputs and normalize / perturb per channel ``C``
(for ``(N, C, L)`` the ``L`` positions count as extra samples, as the paper does for conv maps).
Pass them to ``bncourse.models.mlp`` as ``norm=NoisyBatchNorm1d`` etc. (a callable
``width -> nn.Module``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["ActivationNoise", "NoisyBatchNorm1d", "LpNorm1d", "frozen_noise"]


def _check_unit_input(x: Tensor, num_features: int, name: str) -> None:
    if x.dim() not in (2, 3):
        raise ValueError(f"{name}: expected 2D or 3D input (got {x.dim()}D input)")
    if x.shape[1] != num_features:
        raise ValueError(f"{name}: expected input with {num_features} channels in dim 1, "
                         f"got shape {tuple(x.shape)}")


class ActivationNoise(nn.Module):
    """Per-unit, per-step random affine noise of Santurkar et al. (2018, Appendix A.2.1).

    At every forward call in training mode (= every training step) and for every unit ``j``::

        mu_j    ~ U(-n_mu, n_mu)            sigma_j ~ U(1, n_sigma)
        m_ij    ~ U(mu_j - r_mu, mu_j + r_mu)
        s_ij    ~ N(sigma_j, r_sigma**2)    (r_sigma is used as a standard deviation)
        a_ij   <- s_ij * a_ij + m_ij

    so each unit's distribution is shifted and rescaled by a *different* random amount at every
    step.  In eval mode the layer is the identity.

    Args:
        num_features: number of units ``C``.
        n_mu, n_sigma, r_mu, r_sigma: the paper's constants (defaults 0.5, 1.25, 0.1, 0.1).
        generator: optional ``torch.Generator`` for the draws (default: the global RNG, so
            ``torch.manual_seed`` makes runs reproducible).

    Shape: input ``(N, C)`` or ``(N, C, L)``, output the same.
    """

    def __init__(self, num_features: int, n_mu: float = 0.5, n_sigma: float = 1.25,
                 r_mu: float = 0.1, r_sigma: float = 0.1,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if n_mu < 0 or r_mu < 0 or r_sigma < 0:
            raise ValueError(f"n_mu, r_mu and r_sigma must be >= 0, got {n_mu}, {r_mu}, {r_sigma}")
        if n_sigma < 1:
            raise ValueError(f"n_sigma must be >= 1 (sigma_t ~ U(1, n_sigma)), got {n_sigma}")
        self.num_features = int(num_features)
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.generator = generator
        self._frozen = False
        self._cache: Optional[Tuple[Tensor, Tensor]] = None

    def extra_repr(self) -> str:
        return (f"{self.num_features}, n_mu={self.n_mu}, n_sigma={self.n_sigma}, "
                f"r_mu={self.r_mu}, r_sigma={self.r_sigma}")

    def _uniform(self, shape: Tuple[int, ...], low: Tensor | float, high: Tensor | float,
                 like: Tensor) -> Tensor:
        u = torch.rand(shape, generator=self.generator, dtype=like.dtype, device=like.device)
        return low + (high - low) * u

    def sample(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Draw one step's noise for input ``x``: ``(s, m)``, both of ``x``'s shape."""
        c = self.num_features
        unit_shape = (1, c) + (1,) * (x.dim() - 2)
        mu = self._uniform(unit_shape, -self.n_mu, self.n_mu, x)
        sigma = self._uniform(unit_shape, 1.0, self.n_sigma, x)
        m = self._uniform(tuple(x.shape), mu - self.r_mu, mu + self.r_mu, x)
        z = torch.randn(tuple(x.shape), generator=self.generator, dtype=x.dtype, device=x.device)
        s = sigma + self.r_sigma * z
        return s, m

    def forward(self, x: Tensor) -> Tensor:
        _check_unit_input(x, self.num_features, type(self).__name__)
        if not self.training:
            return x
        if self._frozen and self._cache is not None:
            s, m = self._cache
            if s.shape != x.shape:
                raise ValueError(f"frozen noise was drawn for shape {tuple(s.shape)}, "
                                 f"got input of shape {tuple(x.shape)}")
        else:
            s, m = self.sample(x)
            if self._frozen:
                self._cache = (s, m)
        return s * x + m


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` followed by :class:`ActivationNoise` ("noisy BatchNorm").

    Training mode: ``y = s * BN(x) + m`` with fresh per-unit noise every call; eval mode: plain BN
    with the running statistics (the noise is off).  Extra keyword arguments (``n_mu``,
    ``n_sigma``, ``r_mu``, ``r_sigma``, ``generator``) go to the noise, the rest to BatchNorm1d.

    Shape: ``(N, C)`` or ``(N, C, L)`` -> same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 n_mu: float = 0.5, n_sigma: float = 1.25, r_mu: float = 0.1,
                 r_sigma: float = 0.1, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        self.noise = ActivationNoise(num_features, n_mu=n_mu, n_sigma=n_sigma, r_mu=r_mu,
                                     r_sigma=r_sigma, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.noise(super().forward(x))


class LpNorm1d(nn.Module):
    """l_p batch normalization (Santurkar et al. 2018, Sec. 3.3), p in [1, inf].

    Training mode, per channel ``j`` over the batch (and ``L``) dimension::

        mu_j = mean_i x_ij
        d_j  = (mean_i |x_ij|**p) ** (1/p)      (p = inf: max_i |x_ij|)
        y_ij = weight_j * (x_ij - mu_j) / (d_j + eps) + bias_j

    i.e. the first moment is fixed as in BN and the scale is the batch average of the l_p norm of
    the activations *before* the mean is removed.  With p = 2 and a batch whose mean is already 0,
    ``d_j`` is the biased standard deviation and the layer equals BatchNorm (up to where ``eps``
    enters).  Eval mode uses running averages of ``mu`` and ``d`` (updated like BN's, with
    ``momentum``).

    Shape: ``(N, C)`` or ``(N, C, L)`` -> same.
    """

    def __init__(self, num_features: int, p: float = 2.0, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        p = float(p)
        if math.isnan(p) or p < 1:
            raise ValueError(f"p must be >= 1 or float('inf'), got {p}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.num_features, self.p, self.eps, self.momentum = int(num_features), p, eps, momentum
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_norm", torch.ones(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, p={self.p}, eps={self.eps}, momentum={self.momentum}"

    def batch_stats(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-channel ``(mu, d)`` of a batch ``x`` of shape ``(N, C)`` / ``(N, C, L)``; each ``(C,)``."""
        dims = [0] + list(range(2, x.dim()))
        mu = x.mean(dim=dims)
        a = x.abs()
        if math.isinf(self.p):
            d = a.amax(dim=dims)
        elif self.p == 1.0:
            d = a.mean(dim=dims)
        else:
            d = a.pow(self.p).mean(dim=dims).pow(1.0 / self.p)
        return mu, d

    def forward(self, x: Tensor) -> Tensor:
        _check_unit_input(x, self.num_features, type(self).__name__)
        if self.training:
            n = x.numel() // x.shape[1]
            if n < 2:
                raise ValueError(f"Expected more than 1 value per channel when training, "
                                 f"got input size {tuple(x.shape)}")
            mu, d = self.batch_stats(x)
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
                self.running_norm.lerp_(d.detach(), self.momentum)
        else:
            mu, d = self.running_mean, self.running_norm
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mu.view(shape)) / (d.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


@contextlib.contextmanager
def frozen_noise(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every :class:`ActivationNoise` in ``model`` draws once and then reuses
    that draw (same input shape required), so repeated forward passes see one fixed function.

    Used by ``bncourse.landscape`` so that the line search and the ICS probe measure the landscape
    of *one* step's network rather than noise between draws.  The cache is cleared on exit.
    """
    layers = [m for m in model.modules() if isinstance(m, ActivationNoise)]
    previous = [(m._frozen, m._cache) for m in layers]
    for m in layers:
        m._frozen, m._cache = True, None
    try:
        yield model
    finally:
        for m, (fr, cache) in zip(layers, previous):
            m._frozen, m._cache = fr, cache
