"""Interactive explorers of the chapters, from one JavaScript module each, in Jupyter and on the website.

* :func:`bn_explorer` (chapter 4): BatchNorm on one channel, simulated with torch's rules in the browser;
  sliders for the batch size, momentum, γ, β, ε, the input's shift and scale and the number of steps.
* :func:`norm_axes` (chapter 8): an N×C×H×W block whose cells light up where they share statistics with one
  chosen cell, for BN, LN, IN and GN.

The math and the drawing of each live in one plain ES module in ``bncourse/web/`` (``bn_explorer.js``,
``norm_axes.js``). Displaying an explorer gives a mime bundle with two renderings of that module:

* ``application/vnd.jupyter.widget-view+json``: an `anywidget <https://anywidget.dev>`_ widget whose ``_esm`` is
  the module (Jupyter chooses it; needs the ``anywidget`` package). Its ``state`` trait receives the page's
  summary after every change.
* ``text/html``: a ``<div data-bn-explorer data-values=...>`` (or ``data-norm-axes``) that the module mounts
  when the page loads it. The website build chooses this one (``nb_mime_priority_overrides``), and its Sphinx
  extension (``book/_ext/bncourse_site.py``) adds the module, served from ``_static/``, to those pages only.

No kernel is needed on the website; nothing is loaded from another host.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

WEB = Path(__file__).with_name("web")

BN_DEFAULTS: dict[str, float | int] = {"batch_size": 8, "momentum": 0.1, "gamma": 1.0, "beta": 0.0,
                                       "eps": 1e-5, "shift": 3.0, "scale": 2.0, "steps": 30}
AXES_KINDS = ("bn", "ln", "in", "gn")
AXES_DEFAULTS: dict[str, Any] = {"kind": "bn", "groups": 2, "shape": (3, 4, 2, 2)}

try:
    import anywidget
    import traitlets

    class _BNExplorerWidget(anywidget.AnyWidget):
        """The BN explorer as a Jupyter widget (``values``: its starting values; ``state``: the page's summary)."""

        _esm = WEB / "bn_explorer.js"
        values = traitlets.Dict().tag(sync=True)
        state = traitlets.Dict().tag(sync=True)

    class _NormAxesWidget(anywidget.AnyWidget):
        """The axes picker as a Jupyter widget (``values``: its starting values; ``state``: the page's summary)."""

        _esm = WEB / "norm_axes.js"
        values = traitlets.Dict().tag(sync=True)
        state = traitlets.Dict().tag(sync=True)

    widgets_unavailable: str | None = None
except ImportError as exc:  # the static rendering still works
    widgets_unavailable = f"{exc} (install anywidget)"


def _json_attr(data: dict[str, Any]) -> str:
    return html.escape(json.dumps(data), quote=True)


class Explorer:
    """One explorer with its starting values; display it (last expression of a cell) to show it.

    Attributes:
        kind: ``"bn-explorer"`` or ``"norm-axes"``, the root attribute's name without ``data-``.
        values: the starting values handed to the JavaScript module.
    """

    _MODULES = {"bn-explorer": "bn_explorer.js", "norm-axes": "norm_axes.js"}
    _DESCRIPTIONS = {
        "bn-explorer": "BatchNorm explorer: set the batch size, momentum, γ, β, ε, the input's shift and scale and "
                       "the number of training steps, and see training-mode and evaluation-mode outputs.",
        "norm-axes": "Normalization axes picker: pick BN, LN, IN or GN and see which entries of an N×C×H×W "
                     "block share statistics with one entry.",
    }

    def __init__(self, kind: str, values: dict[str, Any]) -> None:
        if kind not in self._MODULES:
            raise ValueError(f"unknown explorer {kind!r}; expected one of {tuple(self._MODULES)}")
        self.kind = kind
        self.values = dict(values)

    @property
    def module_path(self) -> Path:
        """The ES module (``bncourse/web/*.js``) that draws this explorer, in Jupyter and on the website."""
        return WEB / self._MODULES[self.kind]

    def to_html(self) -> str:
        """The website's rendering: the root element that the module mounts (the page must load the module)."""
        note = (f"{self._DESCRIPTIONS[self.kind]} It runs in the browser with JavaScript (on the course website, "
                f"or in Jupyter with the anywidget package).")
        return (f'<div class="bnc-explorer" data-{self.kind} data-values="{_json_attr(self.values)}">'
                f'<p class="bnc-explorer-fallback">{html.escape(note)}</p></div>')

    def widget(self):
        """The anywidget widget (its ``state`` holds the page's summary once shown). Needs ``anywidget``."""
        if widgets_unavailable:
            raise ImportError(f"the live explorers need anywidget: {widgets_unavailable}")
        cls = _BNExplorerWidget if self.kind == "bn-explorer" else _NormAxesWidget
        return cls(values=self.values)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self.to_html()}
        try:
            data, _meta = self.widget()._repr_mimebundle_()
        except Exception:  # no anywidget or no frontend: the static rendering still shows what it is
            data = None
        if data:
            bundle.update({k: v for k, v in data.items() if k != "text/plain"})
        return bundle

    def __repr__(self) -> str:
        return f"<Explorer {self.kind} {self.values}>"


def _number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if integer and value != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}] (the slider's range), got {value!r}")
    return int(value) if integer else float(value)


def bn_explorer(**values: float) -> Explorer:
    """The BatchNorm explorer of chapter 4, starting from ``values`` (the defaults of ``BN_DEFAULTS``).

    Keyword arguments (each a slider): ``batch_size`` (2..64), ``momentum`` (0..1, torch's convention: the
    weight of the new batch statistic), ``gamma`` and ``beta`` (-3..3), ``eps`` (1e-8..1), ``shift`` (-5..5)
    and ``scale`` (0.1..5) of the input distribution, ``steps`` (1..200 training steps). The page simulates
    BN on one channel with torch's rules (biased variance to normalize, unbiased for ``running_var``, running
    statistics starting at 0 and 1) on seeded batches, so a reload shows the same picture.

    Raises:
        TypeError: an unknown keyword, or a value that is not a finite number.
        ValueError: a value outside its slider's range, or a non-integer batch size or step count.
    """
    unknown = sorted(set(values) - set(BN_DEFAULTS))
    if unknown:
        raise TypeError(f"bn_explorer() got unexpected keyword argument(s) {unknown}; "
                        f"expected some of {list(BN_DEFAULTS)}")
    ranges = {"batch_size": (2, 64), "momentum": (0, 1), "gamma": (-3, 3), "beta": (-3, 3), "eps": (1e-8, 1),
              "shift": (-5, 5), "scale": (0.1, 5), "steps": (1, 200)}
    merged = {**BN_DEFAULTS, **values}
    checked = {k: _number(k, merged[k], *ranges[k], integer=k in ("batch_size", "steps")) for k in BN_DEFAULTS}
    return Explorer("bn-explorer", checked)


def norm_axes(kind: str = "bn", *, groups: int = 2, shape: tuple[int, int, int, int] = (3, 4, 2, 2)) -> Explorer:
    """The axes picker of chapter 8: which entries of an (N, C, H, W) block share statistics with entry (0,0,0,0).

    ``kind`` is ``"bn"``, ``"ln"``, ``"in"`` or ``"gn"`` (with ``groups`` dividing C); each entry of
    ``shape`` is 1..8. The page shows the count of values per statistic, the same as
    :func:`bncourse.beyond.values_per_statistic`.

    Raises:
        ValueError: an unknown kind, a shape that is not four sizes in 1..8, or groups not dividing C.
    """
    if kind not in AXES_KINDS:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {AXES_KINDS}")
    shape = tuple(shape)
    if len(shape) != 4 or not all(isinstance(d, int) and 1 <= d <= 8 for d in shape):
        raise ValueError(f"shape must be four sizes (N, C, H, W) in 1..8, got {shape!r}")
    if not isinstance(groups, int) or groups < 1 or shape[1] % groups:
        raise ValueError(f"num_channels ({shape[1]}) must be divisible by num_groups ({groups})")
    return Explorer("norm-axes", {"kind": kind, "groups": groups, "shape": list(shape)})
