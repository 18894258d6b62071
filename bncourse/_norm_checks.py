"""Input checks of LayerNorm, RMSNorm, GroupNorm and InstanceNorm, shared by the NumPy and torch paths.

Like :mod:`bncourse._checks` (BatchNorm's), every function takes plain Python values (shapes as
tuples) and raises torch's exception type with torch's wording (torch 2.13, CPU), so both
implementations fail the same way on the same bad input.
"""
from __future__ import annotations

import math
import operator

import numpy as np
from numbers import Integral
from typing import Sequence

from ._checks import format_size

__all__ = ["as_normalized_shape", "int_list", "check_normalized_shape", "check_group_norm_ctor", "check_group_norm",
           "check_spatial_size", "check_num_features"]


def as_normalized_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """LayerNorm's/RMSNorm's ``normalized_shape`` argument as a tuple: ``5 -> (5,)``."""
    if isinstance(normalized_shape, Integral):
        normalized_shape = (normalized_shape,)
    shape = tuple(normalized_shape)
    # torch builds the parameters with torch.empty(shape), whose argument parser takes integers
    # only: a float or str element (LayerNorm("12"), LayerNorm((3.5,))) is its TypeError, worded
    # as it words it (the first element is checked apart, and there a bool is refused too)
    for pos, size in enumerate(shape):
        if pos == 0 and (isinstance(size, (bool, np.bool_)) or not _is_index(size)):
            raise TypeError("empty(): argument 'size' (position 1) must be tuple of ints, but found "
                            f"element of type {type(size).__name__} at pos 0")
        if pos > 0 and not (isinstance(size, bool) or _is_index(size)):
            raise TypeError(f"empty(): argument 'size' failed to unpack the object at pos {pos + 1} "
                            f"with error \"type must be tuple of ints,but got {_type_name(size)}\"")
    return tuple(operator.index(s) for s in shape)


def _type_name(value: object) -> str:
    """CPython's ``tp_name``, as torch's parser prints it: ``str``, ``numpy.float64``."""
    t = type(value)
    if t.__module__ == "builtins" or t.__flags__ & (1 << 9):   # Py_TPFLAGS_HEAPTYPE: a Python class
        return t.__name__
    return f"{t.__module__}.{t.__qualname__}"


def _is_index(value: object) -> bool:
    """An integer as torch's parser takes one (Python / NumPy integers, integer 0-d tensors)."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def int_list(shape: Sequence[int]) -> str:
    """ATen's printing of an ``IntArrayRef``: ``[4, 6, 5]``."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_normalized_shape(
    normalized_shape: tuple[int, ...],
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...] | None = None,
    bias_shape: tuple[int, ...] | None = None,
    *,
    rms: bool = False,
) -> None:
    """LayerNorm's / RMSNorm's checks in ATen's order: normalized_shape not empty, the weight's and
    the bias's shapes, then the input's trailing axes (``RuntimeError`` each; RMSNorm's message
    writes ``[*5]`` where LayerNorm's writes ``[*, 5]``)."""
    if len(normalized_shape) == 0:
        raise RuntimeError("Expected normalized_shape to be at least 1-dimensional, i.e., containing "
                           "at least one element, but got normalized_shape = []")
    for name, shape in (("weight", weight_shape), ("bias", bias_shape)):
        if shape is not None and tuple(shape) != tuple(normalized_shape):
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got "
                               f"{name} of shape {int_list(shape)} and normalized_shape = "
                               f"{int_list(normalized_shape)}")
    k = len(normalized_shape)
    if len(input_shape) < k or tuple(input_shape[len(input_shape) - k:]) != tuple(normalized_shape):
        star = "*" if rms else "*, "
        raise RuntimeError(f"Given normalized_shape={int_list(normalized_shape)}, expected input with "
                           f"shape [{star}{int_list(normalized_shape)[1:-1]}], but got input of "
                           f"size{int_list(input_shape)}")


def check_group_norm_ctor(num_groups: int, num_channels: int) -> None:
    """``ValueError: num_channels (10) must be divisible by num_groups (3)`` (the constructor's)."""
    if num_channels % num_groups != 0:
        raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")


def check_group_norm(
    input_shape: tuple[int, ...],
    num_groups: int,
    weight_shape: tuple[int, ...] | None = None,
    bias_shape: tuple[int, ...] | None = None,
) -> None:
    """GroupNorm's forward checks in torch's order: rank >= 2 (``RuntimeError``), one value per group
    (``ValueError``: torch checks it in training and evaluation alike), then ATen's (``RuntimeError``
    each): a positive number of groups, channels divisible by the groups, then weight and bias of ``C`` elements. torch 2.13's bias message
    prints the *weight's* shape (``[0]`` without weight); kept verbatim."""
    if len(input_shape) < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {len(input_shape)}")
    c = input_shape[1]
    # F.group_norm's _verify_batch_size on [N * C // G, G, *spatial] (Python's //: G = 0 is a
    # ZeroDivisionError), then ATen's checks
    size = [input_shape[0] * c // num_groups, num_groups, *input_shape[2:]]
    if size[0] * math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    if num_groups <= 0:
        raise RuntimeError(f"Expected num groups to be greater than 0, got {num_groups}")
    if c % num_groups != 0:
        raise RuntimeError("Expected number of channels in input to be divisible by num_groups, but "
                           f"got input of shape {int_list(input_shape)} and num_groups={num_groups}")
    shown = int_list(weight_shape) if weight_shape is not None else "[0]"
    for name, shape in (("weight", weight_shape), ("bias", bias_shape)):
        if shape is not None and (len(shape) != 1 or math.prod(shape) != c):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels "
                               f"in input, but got {name} of shape {shown} and input of shape "
                               f"{int_list(input_shape)}")


def check_spatial_size(input_shape: tuple[int, ...], torch_style: bool = True) -> None:
    """Instance statistics need more than one position: ``ValueError`` (torch's
    ``_verify_spatial_size``), checked whenever the input's own statistics are used."""
    if math.prod(input_shape[2:]) == 1:
        raise ValueError("Expected more than 1 spatial element when training, got input size "
                         + format_size(input_shape, torch_style))


def check_num_features(feature_dim: int, size: int, num_features: int, affine: bool) -> str | None:
    """InstanceNorm's channel count: ``ValueError`` with parameters; without, torch only warns —
    the warning's text is returned (None when the sizes agree)."""
    if size == num_features:
        return None
    if affine:
        raise ValueError(f"expected input's size at dim={feature_dim} to match num_features"
                         f" ({num_features}), but got: {size}.")
    return (f"input's size at dim={feature_dim} does not match num_features. You can silence this "
            "warning by not passing in num_features, which is not used because affine=False")
