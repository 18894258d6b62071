"""Input validation shared by the NumPy and the PyTorch implementations.

Every function here takes plain Python values (shapes as tuples, dtypes as names) so that both
paths raise exactly the same exception type with exactly the same wording as
``torch.nn.functional.batch_norm`` / ``torch.nn.BatchNorm*d`` (probed on torch 2.13).
"""
from __future__ import annotations

from typing import Optional, Sequence

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
    """torch 2.x: eps must be > 0 in training and >= 0 always."""
    if training and eps <= 0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0:
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
    if input_dtype not in FLOAT_DTYPES:
        raise NotImplementedError(f"\"batch_norm\" not implemented for '{torch_type_name(input_dtype)}'")
    present = [d for d in param_dtypes if d is not None]
    if not present:
        return
    if present[0] != input_dtype:  # torch's is_mixed_type: compares with the first defined one
        if any(d != "float32" for d in present):
            raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of Float")
        if input_dtype not in ("float16", "bfloat16"):
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")
        return
    for d in present:
        if d != input_dtype:
            raise RuntimeError(
                f"expected scalar type {torch_type_name(input_dtype)} but found {torch_type_name(d)}"
            )


# --- added by the torch-core engineer -------------------------------------------------------------

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
