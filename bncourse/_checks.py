"""Input validation shared by the NumPy and the PyTorch implementations.

Every function here takes plain Python values (shapes as tuples, dtypes as names, an
:class:`Operand` describing an array or tensor) so that both paths raise exactly the same
exception type with exactly the same wording as ``torch.nn.functional.batch_norm`` /
``torch.nn.BatchNorm*d`` (probed on torch 2.13). The one sequence of checks in torch's order is
:func:`check_python_rules` (``F.batch_norm``'s own checks) and then :func:`check_batch_norm`
(ATen's); a backend describes its input and calls the two.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

# The dtypes the torch CPU kernel accepts, by name.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_TORCH_TYPE_NAMES = {
    "int8": "Char", "int16": "Short", "int32": "Int", "int64": "Long", "uint8": "Byte",
    "bool": "Bool", "complex64": "ComplexFloat", "complex128": "ComplexDouble",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
}


def format_size(shape: Sequence[int], torch_style: bool = True) -> str:
    """``torch.Size([1, 3])`` for the torch path, ``(1, 3)`` for the NumPy path."""
    dims = ", ".join(str(int(d)) for d in shape)
    if torch_style:
        return f"torch.Size([{dims}])"
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def check_input_rank(ndim: int, allowed: Optional[Sequence[int]] = None) -> None:
    """Raise ``ValueError`` if ``ndim`` is not an accepted rank.

    ``allowed=None`` accepts any rank >= 2 (the functional form); ``(2, 3)`` is BatchNorm1d,
    ``(4,)`` BatchNorm2d and ``(5,)`` BatchNorm3d, with torch's module messages.
    """
    if allowed is None:
        if ndim < 2:
            raise ValueError(f"expected at least 2D input (got {ndim}D input)")
        return
    if ndim in allowed:
        return
    if tuple(allowed) == (2, 3):
        raise ValueError(f"expected 2D or 3D input (got {ndim}D input)")
    raise ValueError(f"expected {allowed[0]}D input (got {ndim}D input)")


def check_eps(eps: float, training: bool) -> None:
    """torch 2.x: eps must be > 0 in training and >= 0 always.

    Compared as given (a 0-d tensor, a string), like ``F.batch_norm``, so that a wrong type fails
    with the same exception as there; ``nan`` passes both checks, as it does in torch.
    """
    if training and eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")


def check_enough_values(shape: Sequence[int], training: bool, torch_style: bool = True) -> None:
    """Training needs more than one value per channel: N * prod(spatial) must not be 1."""
    if not training:
        return
    n = 1
    for i, d in enumerate(shape):
        if i != 1:
            n *= int(d)
    if n == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input size "
            + format_size(shape, torch_style)
        )


def check_param_sizes(num_channels: int, **params: Optional[int]) -> None:
    """``RuntimeError: running_mean should contain 3 elements not 4``.

    Pass the element counts as keywords in torch's check order (running_mean, running_var,
    weight, bias); ``None`` means the tensor is absent.
    """
    for name, numel in params.items():
        if numel is not None and numel != num_channels:
            raise RuntimeError(f"{name} should contain {num_channels} elements not {numel}")


def check_dtypes(input_dtype: str, param_dtypes: Sequence[Optional[str]]) -> None:
    """Mirror the CPU kernel's dtype rules (probed on torch 2.13, ``aten/.../mixed_type.h``).

    ``param_dtypes`` lists the dtype names of ``(weight, bias, running_mean, running_var)`` in that
    order (``None`` = absent); the order matters because torch compares the input with the *first*
    present one.

    * integer / bool / complex input: ``NotImplementedError: "batch_norm" not implemented for 'Long'``;
    * "mixed" (first present parameter's dtype differs from the input's): every present parameter
      must be float32 (``RuntimeError: mixed dtype (CPU): expect parameter to have scalar type of
      Float``), then the input must be float16/bfloat16 (``RuntimeError: mixed dtype (CPU): all
      inputs must share same datatype.``);
    * otherwise every present parameter must have the input's dtype:
      ``RuntimeError: expected scalar type Half but found Float``.
    """
    check_mixed_dtypes(input_dtype, param_dtypes)
    check_same_dtypes(input_dtype, param_dtypes)


def check_mixed_dtypes(input_dtype: str, param_dtypes: Sequence[Optional[str]]) -> None:
    """The first half of :func:`check_dtypes`: the input's own dtype, and the mixed-type rules.

    torch makes these before the running buffers' rank check (:func:`check_stats_ndim`), and the
    same-dtype rule (:func:`check_same_dtypes`) after it.
    """
    if input_dtype not in FLOAT_DTYPES:
        raise NotImplementedError(f"\"batch_norm\" not implemented for '{torch_type_name(input_dtype)}'")
    present = [d for d in param_dtypes if d is not None]
    if present and present[0] != input_dtype:  # torch's is_mixed_type: compares with the first one
        if any(d != "float32" for d in present):
            raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of Float")
        if input_dtype not in ("float16", "bfloat16"):
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")


def check_same_dtypes(input_dtype: str, param_dtypes: Sequence[Optional[str]]) -> None:
    """The second half of :func:`check_dtypes`: without mixed types, every parameter has the
    input's dtype."""
    present = [d for d in param_dtypes if d is not None]
    if not present or present[0] != input_dtype:
        return
    for d in present:
        if d != input_dtype:
            raise RuntimeError(
                f"expected scalar type {torch_type_name(input_dtype)} but found {torch_type_name(d)}"
            )


_FLOAT_TYPE_NAMES = {"float16": "Half", "bfloat16": "BFloat16", "float32": "Float", "float64": "Double"}


def torch_type_name(dtype: str) -> str:
    """ATen's ScalarType name of a dtype name: ``'float32' -> 'Float'``, ``'int64' -> 'Long'``."""
    return _FLOAT_TYPE_NAMES.get(dtype) or _TORCH_TYPE_NAMES.get(dtype, dtype)


def check_batch_norm_params(
    num_channels: int,
    training: bool,
    running_mean: Optional[int],
    running_var: Optional[int],
    weight: Optional[int],
    bias: Optional[int],
) -> None:
    """Element-count and presence checks in ATen's exact order (``_batch_norm_impl_index``).

    Arguments are element counts (``None`` = absent). For each of running_mean, running_var:
    a wrong count raises ``RuntimeError: running_mean should contain 3 elements not 4``, absence in
    eval raises ``RuntimeError: running_mean must be defined in evaluation mode``; then weight and
    bias counts. (Next in torch's order come the requires-grad check of the buffers, then
    :func:`check_stats_pairing`, then :func:`check_dtypes`, then :func:`check_stats_ndim`.)
    """
    for name, numel in (("running_mean", running_mean), ("running_var", running_var)):
        if numel is not None:
            check_param_sizes(num_channels, **{name: numel})
        elif not training:
            raise RuntimeError(f"{name} must be defined in evaluation mode")
    check_param_sizes(num_channels, weight=weight, bias=bias)


def check_stats_pairing(has_running_mean: bool, has_running_var: bool) -> None:
    """Training with only one running buffer: torch's ``ValueError`` (checked after the sizes)."""
    if has_running_mean != has_running_var:
        raise ValueError("running_mean and running_var must either both be None or neither be None")


def check_stats_ndim(ndim: int) -> None:
    """Running buffers must be 1-D: ``RuntimeError: TensorAccessor expected 1 dims but tensor has 2``."""
    if ndim != 1:
        raise RuntimeError(f"TensorAccessor expected 1 dims but tensor has {ndim}")


def check_buffers_grad(running_mean_requires_grad: bool, running_var_requires_grad: bool) -> None:
    """Running buffers must not require grad (checked only while grad mode is on, as in torch)."""
    for name, flag in (("running_mean", running_mean_requires_grad),
                       ("running_var", running_var_requires_grad)):
        if flag:
            raise RuntimeError(f"The function 'native_batch_norm' is not differentiable with "
                               f"respect to argument '{name}'. This input cannot have "
                               "requires_grad True.")


class Operand(NamedTuple):
    """An array or tensor as the checks see it: ``shape``, ``dtype`` name ('float32'), and for
    tensors ``requires_grad`` and ``device`` (a string; None for NumPy arrays)."""

    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool = False
    device: Optional[str] = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


def check_python_rules(shape: Sequence[int], training: bool, eps: float,
                       torch_style: bool = True) -> None:
    """``F.batch_norm``'s own checks, made on the raw arguments before any type check: in
    training a 0-d input and one value per channel; then the ``eps`` rules."""
    if training:
        if len(shape) == 0:
            check_input_rank(0)
        check_enough_values(tuple(shape), True, torch_style)
    check_eps(eps, training)


def check_batch_norm(
    input: Operand,
    running_mean: Optional[Operand],
    running_var: Optional[Operand],
    weight: Optional[Operand],
    bias: Optional[Operand],
    *,
    training: bool,
    grad_enabled: bool = False,
    torch_style: bool = True,
    one_dim_params: bool = False,
) -> None:
    """ATen's checks of ``batch_norm`` (``_batch_norm_impl_index`` and the CPU kernel), in its order.

    Rank, element counts and evaluation-mode buffers, buffers that require grad (when
    ``grad_enabled``), both-or-neither buffers (training), mixed dtypes, then each tensor as the
    kernel reads it (a running buffer's rank, then its dtype; training reads the buffers first,
    evaluation weight and bias first), then devices. ``one_dim_params``: the NumPy rule that every
    parameter is 1-D (``ValueError``, before the dtype checks; torch accepts any shape with C
    elements for weight and bias).
    """
    check_input_rank(len(input.shape))
    check_batch_norm_params(input.shape[1], training, _numel(running_mean), _numel(running_var),
                            _numel(weight), _numel(bias))
    if grad_enabled:
        check_buffers_grad(running_mean is not None and running_mean.requires_grad,
                           running_var is not None and running_var.requires_grad)
    if training:
        check_stats_pairing(running_mean is not None, running_var is not None)
    present = [(name, t) for name, t in (("weight", weight), ("bias", bias),
                                         ("running_mean", running_mean), ("running_var", running_var))
               if t is not None]
    if one_dim_params:
        for name, t in present:
            if len(t.shape) != 1:
                raise ValueError(f"{name} must be 1-D with {input.shape[1]} elements, got shape "
                                 + format_size(t.shape, torch_style))
    check_mixed_dtypes(input.dtype, [t.dtype for _, t in present])
    _check_param_access(input, weight, bias, running_mean, running_var, training)
    for _, t in present:
        if t.device != input.device:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least "
                               f"two devices, {input.device} and {t.device}!")


def _numel(t: Optional[Operand]) -> Optional[int]:
    return None if t is None else math.prod(t.shape)


def _check_param_access(input: Operand, weight: Optional[Operand], bias: Optional[Operand],
                        running_mean: Optional[Operand], running_var: Optional[Operand],
                        training: bool) -> None:
    """The rank and dtype errors of ATen's CPU kernel, in the order it reads its tensors.

    A running buffer is read through a 1-D accessor (rank first, then dtype); weight and bias
    through a typed pointer (dtype only). Training reads the buffers first, evaluation weight and
    bias first (probed on torch 2.13). Every tensor must have the parameter dtype: the input's,
    or float32 on the mixed path (which :func:`check_mixed_dtypes` has vetted already).
    """
    stats = ((running_mean, True), (running_var, True))
    affine = ((weight, False), (bias, False))
    first = next((t for t in (weight, bias, running_mean, running_var) if t is not None), None)
    expected = input.dtype if first is None else first.dtype
    for t, is_stat in (stats + affine if training else affine + stats):
        if t is None:
            continue
        if is_stat:
            check_stats_ndim(t.ndim)
        if t.dtype != expected:
            raise RuntimeError(f"expected scalar type {torch_type_name(expected)} but found "
                               f"{torch_type_name(t.dtype)}")
