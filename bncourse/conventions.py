"""The "Rosetta stone": how frameworks spell BatchNorm's running statistics, as data.

Four conventions are covered: PyTorch (``torch.nn.BatchNorm*d``), Keras (``keras.layers.
BatchNormalization``), Flax (``flax.linen.BatchNorm``) and the Stanford CS231n assignment
(``cs231n/layers.py::batchnorm_forward``). They agree on the normalization itself
(``y = gamma * (x - mean) / sqrt(var + eps) + beta``, eps inside the square root, biased batch
variance in training) and disagree on the running statistics:

* what ``momentum`` means: the weight of the *new* batch statistic (PyTorch, "update") or of the
  *old* running value (Keras, Flax, CS231n, "decay"); ``torch 0.1 == Keras 0.9``;
* which batch variance enters the running estimate: unbiased (PyTorch, like Algorithm 2 of Ioffe &
  Szegedy, 2015) or biased (the others);
* default ``momentum`` and ``eps``, and the initial ``running_var``.

Everything here is plain NumPy so that each framework's update can be simulated without the
framework. Every fact carries its evidence in ``Convention.verified`` (field -> text) and every row
cites its documentation in ``Convention.source``: ``"probed"`` was run against the installed library;
``"documented"`` is stated on the cited documentation page (read offline through a stored copy);
``"not checked"`` could be confirmed neither by a probe nor by the documentation -- the table says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MomentumMeaning = Literal["update", "decay"]


@dataclass(frozen=True)
class Convention:
    """One framework's BatchNorm conventions (one row of the Rosetta stone)."""

    key: str                    # short name used by the functions below
    framework: str              # human-readable name
    api: str                    # where the layer lives
    momentum: float             # default value of the momentum argument
    momentum_meaning: MomentumMeaning  # "update": weight of the new batch stat; "decay": of the old value
    eps: float                  # default epsilon
    eps_placement: str          # where eps enters the normalization
    running_var_estimator: Literal["unbiased", "biased"]  # batch variance used in the running update
    init_running_mean: float
    init_running_var: float
    verified: dict[str, str]    # field -> "probed" | "documented" | "not checked" (+ remarks)
    source: str = ""            # the documentation the row cites
    notes: str = ""

    @property
    def update_weight(self) -> float:
        """Weight of the new batch statistic in the EMA with the default momentum."""
        return self.momentum if self.momentum_meaning == "update" else 1.0 - self.momentum


CONVENTIONS: dict[str, Convention] = {
    "torch": Convention(
        key="torch", framework="PyTorch", api="torch.nn.BatchNorm1d/2d/3d",
        momentum=0.1, momentum_meaning="update", eps=1e-5, eps_placement="inside sqrt",
        running_var_estimator="unbiased", init_running_mean=0.0, init_running_var=1.0,
        verified={"all": "probed on torch 2.13 (tests/book/test_conventions.py re-checks every field)"},
        source="https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html",
        notes="momentum=None gives a cumulative average of the batch statistics (Algorithm 2's E_B[.]).",
    ),
    "keras": Convention(
        key="keras", framework="Keras / TF", api="keras.layers.BatchNormalization",
        momentum=0.99, momentum_meaning="decay", eps=1e-3, eps_placement="inside sqrt",
        running_var_estimator="biased", init_running_mean=0.0, init_running_var=1.0,
        verified={"all": "documented: momentum=0.99, epsilon=0.001, moving_mean_initializer='zeros', "
                         "moving_variance_initializer='ones' in the signature; the update "
                         "moving = moving * momentum + batch * (1 - momentum) in the text",
                  "running_var_estimator": "not checked: the documentation writes var(batch) without saying "
                  "whether it is the biased or the unbiased variance (Keras 3 computes it with ops.moments, "
                  "biased; the legacy fused TF kernel is believed to apply Bessel's correction)"},
        source="https://www.tensorflow.org/versions/r2.6/api_docs/python/tf/keras/layers/BatchNormalization",
        notes="moving = momentum * moving + (1 - momentum) * batch_stat.",
    ),
    "flax": Convention(
        key="flax", framework="Flax (linen)", api="flax.linen.BatchNorm",
        momentum=0.99, momentum_meaning="decay", eps=1e-5, eps_placement="inside sqrt",
        running_var_estimator="biased", init_running_mean=0.0, init_running_var=1.0,
        verified={"all": "documented: momentum=0.99, epsilon=1e-05 in the signature of flax.linen.BatchNorm, "
                         "momentum described as the decay rate of the exponential moving average",
                  "init_running_var": "not checked: the documentation page does not give the initial "
                  "running variance (ones, as in the libraries, is assumed)",
                  "running_var_estimator": "not checked: the documentation describes use_fast_variance "
                  "(E[x^2] - E[x]^2, a biased estimate) but does not state the estimator in words"},
        source="https://flax.readthedocs.io/en/v0.6.10/api_reference/_autosummary/flax.linen.BatchNorm.html",
        notes="ra = momentum * ra + (1 - momentum) * batch_stat; use_running_average selects eval.",
    ),
    "cs231n": Convention(
        key="cs231n", framework="CS231n assignment 2", api="cs231n/layers.py: batchnorm_forward",
        momentum=0.9, momentum_meaning="decay", eps=1e-5, eps_placement="inside sqrt",
        running_var_estimator="biased", init_running_mean=0.0, init_running_var=0.0,
        verified={"all": "documented in the starter code's docstring and body: momentum = bn_param.get("
                         "'momentum', 0.9), eps = bn_param.get('eps', 1e-5), the update running = momentum * "
                         "running + (1 - momentum) * sample, biased (uncorrected) sample variance",
                  "init_running_var": "documented: bn_param.get('running_var', np.zeros(D)) -- zeros, unlike "
                  "the libraries (read in public copies of the starter code: the course's own page is not "
                  "stored offline, so the version cannot be pinned)"},
        source="CS231n assignment 2, cs231n/layers.py: batchnorm_forward (starter code, public copies)",
        notes="running = momentum * running + (1 - momentum) * sample_stat; sample_var = np.var (biased).",
    ),
}


def get_convention(convention: str) -> Convention:
    """Look up a row of the Rosetta stone by key (``torch``, ``keras``, ``flax``, ``cs231n``)."""
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise ValueError(
            f"unknown convention {convention!r}; expected one of {sorted(CONVENTIONS)}"
        ) from None


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def torch_momentum_from_decay(decay: float) -> float:
    """Keras/Flax/CS231n ``momentum`` (weight of the old value) -> PyTorch ``momentum``.

    ``torch_momentum_from_decay(0.99) == 0.01`` (up to rounding); ``0.9 -> 0.1``.
    """
    return 1.0 - _check_fraction("decay", decay)


def decay_from_torch_momentum(momentum: float) -> float:
    """PyTorch ``momentum`` (weight of the new value) -> Keras/Flax/CS231n ``momentum``."""
    return 1.0 - _check_fraction("momentum", momentum)


def convert_momentum(value: float, source: str, target: str) -> float:
    """Translate a momentum value between conventions, e.g. ``("keras" 0.99) -> ("torch" 0.01)``."""
    src, dst = get_convention(source), get_convention(target)
    value = _check_fraction("momentum", value)
    weight_new = value if src.momentum_meaning == "update" else 1.0 - value
    return weight_new if dst.momentum_meaning == "update" else 1.0 - weight_new


def ema_update(running: np.ndarray, batch_stat: np.ndarray, momentum: float,
               convention: str = "torch") -> np.ndarray:
    """One exponential-moving-average step of a running statistic, as ``convention`` reads momentum.

    ``"torch"``: ``(1 - momentum) * running + momentum * batch_stat``;
    ``"keras"``/``"flax"``/``"cs231n"``: ``momentum * running + (1 - momentum) * batch_stat``.
    Shapes: ``running`` and ``batch_stat`` are (C,). Returns a new array (nothing is modified).
    """
    conv = get_convention(convention)
    momentum = _check_fraction("momentum", momentum)
    running = np.asarray(running)
    batch_stat = np.asarray(batch_stat)
    if running.shape != batch_stat.shape:
        raise ValueError(f"running has shape {running.shape} but batch_stat has shape {batch_stat.shape}")
    w = momentum if conv.momentum_meaning == "update" else 1.0 - momentum
    return (1.0 - w) * running + w * batch_stat


def batch_statistics(x: np.ndarray, convention: str = "torch") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel batch statistics of ``x`` ``(N, C)`` or ``(N, C, *spatial)``.

    Returns ``(mean, var_normalize, var_running)``: the mean, the biased variance that every
    convention uses to normalize in training, and the variance that ``convention`` feeds into the
    running estimate (unbiased, i.e. times m/(m-1), for PyTorch; biased otherwise). Shapes (C,).
    """
    conv = get_convention(convention)
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"expected at least 2D input (got {x.ndim}D input)")
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = ((x - np.expand_dims(mean, axes)) ** 2).mean(axis=axes)
    if conv.running_var_estimator == "unbiased":
        if m < 2:
            raise ValueError("an unbiased variance needs more than 1 value per channel")
        running = var * (m / (m - 1))
    else:
        running = var
    return mean, var, running


def simulate_running_stats(batches, convention: str = "torch", momentum: float | None = None,
                           num_channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Running mean and variance after training-mode forwards on ``batches``, in ``convention``.

    Starts from the convention's initial values; ``momentum=None`` uses its default. Every batch is
    ``(N, C)`` or ``(N, C, *spatial)``. Returns ``(running_mean, running_var)``, shapes (C,).
    """
    conv = get_convention(convention)
    momentum = conv.momentum if momentum is None else momentum
    running_mean = running_var = None
    for x in batches:
        mean, _, var = batch_statistics(x, convention)
        if running_mean is None:
            c = mean.shape[0]
            if num_channels is not None and num_channels != c:
                raise ValueError(f"expected {num_channels} channels, got {c}")
            running_mean = np.full(c, conv.init_running_mean, dtype=mean.dtype)
            running_var = np.full(c, conv.init_running_var, dtype=mean.dtype)
        running_mean = ema_update(running_mean, mean, momentum, convention)
        running_var = ema_update(running_var, var, momentum, convention)
    if running_mean is None:
        raise ValueError("batches is empty")
    return running_mean, running_var


def normalize(x: np.ndarray, mean: np.ndarray, var: np.ndarray, gamma=1.0, beta=0.0,
              eps: float = 1e-5) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` per channel (axis 1); eps inside the sqrt,
    as in every convention here. ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; the rest are (C,) or scalars."""
    x = np.asarray(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def r(a):
        a = np.asarray(a, dtype=x.dtype)
        return a.reshape(shape) if a.ndim else a

    return r(gamma) * (x - r(mean)) / np.sqrt(r(var) + eps) + r(beta)


TABLE_FIELDS = (
    ("framework", "framework"),
    ("api", "layer"),
    ("momentum", "default momentum"),
    ("momentum_meaning", "momentum weights"),
    ("update_weight", "weight of new batch stat"),
    ("eps", "default eps"),
    ("eps_placement", "eps"),
    ("running_var_estimator", "variance in running_var"),
    ("init_running_var", "initial running_var"),
)


def check_status(conv: Convention) -> str:
    """One line for the table: how the row's facts were checked, naming the fields that could not be."""
    overall = conv.verified.get("all", "").split(":")[0].split(" ")[0]
    unchecked = sorted(f for f, v in conv.verified.items() if f != "all" and v.startswith("not checked"))
    return overall + (f"; not checked: {', '.join(unchecked)}" if unchecked else "")


def table_rows() -> list[dict[str, object]]:
    """The Rosetta stone as a list of dicts (one per convention), with readable column names."""
    rows = []
    for conv in CONVENTIONS.values():
        row = {}
        for attr, label in TABLE_FIELDS:
            value = getattr(conv, attr)
            if attr == "momentum_meaning":
                value = "new value" if value == "update" else "old value"
            if attr == "update_weight":
                value = round(value, 6)
            row[label] = value
        row["checked"] = check_status(conv)
        row["documentation"] = conv.source
        rows.append(row)
    return rows
