"""Small networks for the course's experiments: a configurable MLP and a small CNN.

``mlp([784, 100, 100, 100, 10], activation="sigmoid", norm="bn", init=0.1)`` is Ioffe & Szegedy's Fig. 1
network. Each hidden layer is a named ``nn.Sequential`` block inside the returned model::

    model.hidden1 = Sequential(linear: Linear, norm: BatchNorm1d, act: Sigmoid)   # norm_position="before"
    ...
    model.out     = Linear

so hooks are easy: ``hidden_preactivations(model)`` lists, per hidden layer, the module whose forward
output is the input of the nonlinearity (the norm layer when it comes before the activation, else the
Linear).
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

__all__ = ["mlp", "small_cnn", "hidden_blocks", "hidden_preactivations", "hidden_linears", "make_norm",
           "count_parameters", "ACTIVATIONS"]

#: Activation name -> module factory.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "linear": nn.Identity,
}

NormSpec = None | str | Callable[[int], nn.Module]


def make_norm(norm: NormSpec, width: int, *, dims: int = 1) -> nn.Module | None:
    """Build a normalization layer for ``width`` features.

    Args:
        norm: ``None`` (no layer), ``"bn"`` (``torch.nn.BatchNorm1d``/``2d``), ``"bncourse"`` (the course's
            ``bncourse.torch.BatchNorm1d``/``2d``), ``"ln"`` (``torch.nn.LayerNorm``; for ``dims=2`` a
            ``GroupNorm`` with one group, i.e. LayerNorm over (C, H, W)), or a callable ``width -> nn.Module``.
        width: number of features / channels.
        dims: 1 for (N, C) inputs, 2 for (N, C, H, W).
    """
    if norm is None:
        return None
    if callable(norm) and not isinstance(norm, str):
        layer = norm(width)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"norm callable must return an nn.Module, got {type(layer).__name__}")
        return layer
    if norm == "bn":
        return nn.BatchNorm1d(width) if dims == 1 else nn.BatchNorm2d(width)
    if norm == "bncourse":
        from bncourse import torch as bt  # imported lazily: the course's own BN (issue 2)

        return bt.BatchNorm1d(width) if dims == 1 else bt.BatchNorm2d(width)
    if norm == "ln":
        return nn.LayerNorm(width) if dims == 1 else nn.GroupNorm(1, width)
    raise ValueError(f"unknown norm {norm!r}; expected None, 'bn', 'bncourse', 'ln' or a callable width -> Module")


def _init_linear(layer: nn.Linear | nn.Conv2d, init: str | float, activation: str) -> None:
    """Initialize ``layer.weight`` in place (biases, if any, to 0); ``activation`` is the one that follows."""
    if init == "default":
        return
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if not init > 0:
            raise ValueError(f"init std must be > 0, got {init}")
        nn.init.normal_(layer.weight, 0.0, float(init))
    elif init == "he":  # std = gain / sqrt(fan_in), gain sqrt(2) for ReLU, 1 for the others
        if activation in ("relu", "leaky_relu"):
            nn.init.kaiming_normal_(layer.weight, a=0.01 if activation == "leaky_relu" else 0.0,
                                    mode="fan_in", nonlinearity=activation)
        else:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="linear")
    elif init == "glorot":  # std = sqrt(2 / (fan_in + fan_out)), Glorot & Bengio's gain 1
        nn.init.xavier_normal_(layer.weight)
    else:
        raise ValueError(f"unknown init {init!r}; expected 'he', 'glorot', 'default' or a positive float std")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def mlp(
    sizes: Sequence[int],
    *,
    activation: str = "relu",
    norm: NormSpec = None,
    init: str | float = "he",
    bias: bool | None = None,
    dropout: float = 0.0,
    norm_position: str = "before",
) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Args:
        sizes: layer widths, e.g. ``[784, 100, 100, 100, 10]`` (3 hidden layers). At least 2 entries.
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"leaky_relu"`` or ``"linear"``.
        norm: normalization of each hidden layer: ``None``, ``"bn"``, ``"bncourse"``, ``"ln"`` or a callable
            ``width -> nn.Module`` (e.g. chapter 6's noisy BN).
        init: weight initialization of every Linear: ``"he"`` (Kaiming normal, fan-in), ``"glorot"``
            (Xavier normal), ``"default"`` (PyTorch's), or a float ``s`` = all weights N(0, s²) (Ioffe Fig. 1).
            Biases start at 0 unless ``init == "default"``.
        bias: whether hidden Linears have a bias. ``None`` = "not when a norm follows directly"
            (Ioffe & Szegedy: BN's β subsumes it). The output Linear always has a bias.
        dropout: dropout probability after each hidden block (0 = none).
        norm_position: ``"before"`` (Linear -> norm -> activation, as in the paper) or ``"after"``
            (Linear -> activation -> norm).

    Returns:
        ``nn.Sequential`` with children ``hidden1 ... hiddenK`` (each a Sequential with children ``linear``,
        [``norm``], ``act``, [``dropout``] in forward order) and ``out`` (Linear). Input (N, sizes[0]) ->
        logits (N, sizes[-1]).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"sizes must list >= 2 positive widths, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    if norm_position not in ("before", "after"):
        raise ValueError(f"norm_position must be 'before' or 'after', got {norm_position!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    model = nn.Sequential()
    for i, (fan_in, width) in enumerate(zip(sizes[:-2], sizes[1:-1]), start=1):
        norm_layer = make_norm(norm, width)
        has_bias = bias if bias is not None else not (norm_layer is not None and norm_position == "before")
        block = nn.Sequential()
        block.add_module("linear", nn.Linear(fan_in, width, bias=has_bias))
        _init_linear(block.linear, init, activation)
        if norm_layer is not None and norm_position == "before":
            block.add_module("norm", norm_layer)
        block.add_module("act", ACTIVATIONS[activation]())
        if norm_layer is not None and norm_position == "after":
            block.add_module("norm", norm_layer)
        if dropout > 0:
            block.add_module("dropout", nn.Dropout(dropout))
        model.add_module(f"hidden{i}", block)
    out = nn.Linear(sizes[-2], sizes[-1])
    _init_linear(out, init, "linear")  # no nonlinearity follows the output layer
    model.add_module("out", out)
    return model


def hidden_blocks(model: nn.Module) -> list[nn.Sequential]:
    """The ``hidden1 ... hiddenK`` blocks of a model built by :func:`mlp` or :func:`small_cnn`, in order."""
    blocks = [m for name, m in model.named_children() if name.startswith("hidden")]
    if not blocks:
        raise ValueError("model has no children named hidden1, hidden2, ... (build it with bncourse.models.mlp)")
    return blocks


def hidden_linears(model: nn.Module) -> list[nn.Module]:
    """The Linear (or Conv2d) layer of each hidden block, in order."""
    return [b.linear for b in hidden_blocks(model)]


def hidden_preactivations(model: nn.Module) -> list[nn.Module]:
    """Per hidden block, the module whose forward *output* is the input of the nonlinearity.

    That is the norm layer when ``norm_position="before"``, otherwise the Linear. A forward hook on the
    returned modules sees exactly the values the sigmoid (or ReLU, ...) receives — Ioffe Fig. 1(b, c).
    """
    result = []
    for block in hidden_blocks(model):
        names = [n for n, _ in block.named_children()]
        i = names.index("act")
        result.append(getattr(block, names[i - 1]))
    return result


def small_cnn(
    in_shape: tuple[int, int, int] = (1, 28, 28),
    n_classes: int = 10,
    *,
    channels: Sequence[int] = (16, 32),
    norm: NormSpec = None,
    activation: str = "relu",
    init: str | float = "he",
    bias: bool | None = None,
) -> nn.Sequential:
    """A small CNN: per entry of ``channels`` a block 3×3 conv (padding 1) -> [norm] -> activation -> 2×2
    max-pool, then global average pooling and a Linear classifier.

    Args:
        in_shape: ``(C, H, W)`` of one input image, e.g. ``(1, 28, 28)`` (``ImageData.image_shape``).
        n_classes: number of outputs.
        channels: output channels of each conv block.
        norm: as in :func:`mlp`, with 2-D layers (``"bn"`` -> ``BatchNorm2d``; statistics per channel over
            batch and positions).
        activation, init, bias: as in :func:`mlp`.

    Returns:
        ``nn.Sequential`` with children ``hidden1 ...`` (children ``linear`` (the Conv2d), [``norm``], ``act``,
        ``pool``), ``gap`` and ``out``. Input (N, C, H, W) -> logits (N, n_classes).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    c_in = int(in_shape[0])
    model = nn.Sequential()
    for i, c in enumerate(channels, start=1):
        norm_layer = make_norm(norm, c, dims=2)
        has_bias = bias if bias is not None else norm_layer is None
        block = nn.Sequential()
        block.add_module("linear", nn.Conv2d(c_in, c, kernel_size=3, padding=1, bias=has_bias))
        _init_linear(block.linear, init, activation)
        if norm_layer is not None:
            block.add_module("norm", norm_layer)
        block.add_module("act", ACTIVATIONS[activation]())
        block.add_module("pool", nn.MaxPool2d(2))
        model.add_module(f"hidden{i}", block)
        c_in = c
    model.add_module("gap", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    out = nn.Linear(c_in, n_classes)
    _init_linear(out, init, "linear")
    model.add_module("out", out)
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
