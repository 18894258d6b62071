"""Bad input raises what torch raises, on every backend: the same exception type and the same
``str(exc)`` (the NumPy path writes sizes ``(1, 3)`` instead of ``torch.Size([1, 3])``).

Every case calls ``F.batch_norm`` and the backend's functional form with the same arguments and
compares; the cases a backend does not take by design are skipped with the reason
(``backends.py``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cases import outcome
from torch_compat import TORCH_213_EPS_WORDING

torch.set_num_threads(1)


X = lambda *s, dtype=torch.float32: torch.randn(*s).to(dtype)  # noqa: E731
Z, O = torch.zeros, torch.ones
L, D, H, B16 = torch.long, torch.float64, torch.float16, torch.bfloat16

# (id, input, running_mean, running_var, weight, bias, kwargs)
FUNCTIONAL_CASES = [
    ("one-value-train", X(1, 3), Z(3), O(3), None, None, {"training": True}),
    ("one-value-3d", torch.rand(10)[None, :, None], Z(10), O(10), None, None, {"training": True}),
    ("one-value-4d", X(1, 3, 1, 1), None, None, None, None, {"training": True}),
    ("rm-size", X(4, 3), Z(4), O(3), None, None, {"training": True}),
    ("rm-size-9", X(4, 10), Z(9), O(10), None, None, {"training": True}),
    ("rv-size-11", X(4, 10), Z(10), O(11), None, None, {"training": True}),
    ("w-size", X(4, 10), Z(10), O(10), O(9), None, {"training": True}),
    ("b-size", X(4, 10), Z(10), O(10), O(10), O(11), {"training": False}),
    ("order-rm-before-w", X(4, 3), Z(4), O(4), O(2), O(2), {"training": True}),
    ("order-rv-before-w", X(4, 3), Z(3), O(4), O(2), None, {"training": True}),
    ("order-w-before-b", X(4, 3), None, None, O(2), O(4), {"training": True}),
    ("eval-no-stats", X(4, 3), None, None, None, None, {"training": False}),
    ("eval-no-rv", X(4, 3), Z(3), None, None, None, {"training": False}),
    ("eval-rm-size-then-rv", X(4, 3), Z(4), None, None, None, {"training": False}),
    ("train-only-rm", X(4, 3), Z(3), None, None, None, {"training": True}),
    ("train-only-rv", X(4, 3), None, O(3), None, None, {"training": True}),
    ("eps-0-train", X(4, 3), Z(3), O(3), None, None, {"training": True, "eps": 0}),
    ("eps-0.0-train", X(4, 3), Z(3), O(3), None, None, {"training": True, "eps": 0.0}),
    ("eps-neg-train", X(4, 3), Z(3), O(3), None, None, {"training": True, "eps": -1e-3}),
    ("eps-neg-eval", X(4, 3), Z(3), O(3), None, None, {"training": False, "eps": -1}),
    ("one-value-before-eps", X(1, 3), Z(3), O(3), None, None, {"training": True, "eps": 0}),
    ("eps-before-size", X(4, 3), Z(4), O(3), None, None, {"training": False, "eps": -1.0}),
    ("int-input", X(4, 3, dtype=L), Z(3), O(3), None, None, {"training": True}),
    ("int-input-eval", X(4, 3, dtype=torch.int32), Z(3), O(3), None, None, {}),
    ("uint8-input", X(4, 3, dtype=torch.uint8), None, None, None, None, {"training": True}),
    ("bool-input", X(4, 3, dtype=torch.bool), None, None, None, None, {"training": True}),
    ("int-input-int-stats", X(4, 3, dtype=L), Z(3, dtype=L), O(3, dtype=L), None, None, {"training": True}),
    ("size-before-dtype", X(4, 3, dtype=L), Z(4), O(4), None, None, {"training": True}),
    ("f32-f64-stats", X(4, 3), Z(3, dtype=D), O(3, dtype=D), None, None, {"training": True}),
    ("f32-f64-stats-eval", X(4, 3), Z(3, dtype=D), O(3, dtype=D), None, None, {}),
    ("f32-f64-weight", X(4, 3), Z(3), O(3), O(3, dtype=D), None, {"training": True}),
    ("f64-f32-stats", X(4, 3, dtype=D), Z(3), O(3), None, None, {"training": True}),
    ("f64-f32-weight-no-stats", X(4, 3, dtype=D), None, None, O(3), None, {"training": True}),
    ("f64-f32-weight", X(4, 3, dtype=D), Z(3, dtype=D), O(3, dtype=D), O(3), None, {"training": True}),
    ("f32-long-params", X(4, 3), Z(3, dtype=L), O(3, dtype=L), None, None, {"training": True}),
    ("f32-f32-rm-f64-rv", X(4, 3), Z(3), O(3, dtype=D), None, None, {"training": True}),
    ("f32-w-f64-b", X(4, 3), None, None, O(3), O(3, dtype=D), {"training": True}),
    ("f32-w-long-b", X(4, 3), None, None, O(3), O(3, dtype=L), {"training": True}),
    ("f32-f16-weight", X(4, 3), Z(3), O(3), O(3, dtype=H), None, {"training": True}),
    ("f16-f32-stats-f16-w", X(4, 3, dtype=H), Z(3), O(3), O(3, dtype=H), None, {"training": True}),
    ("f16-f16-stats-f32-w", X(4, 3, dtype=H), Z(3, dtype=H), O(3, dtype=H), O(3), None, {"training": True}),
    ("f16-f64-stats", X(4, 3, dtype=H), Z(3, dtype=D), O(3, dtype=D), None, None, {"training": True}),
    ("f16-half-rm-f32-rv", X(4, 3, dtype=H), Z(3, dtype=H), O(3), None, None, {"training": True}),
    ("f16-f32-rm-half-rv", X(4, 3, dtype=H), Z(3), O(3, dtype=H), None, None, {}),
    ("f16-f32-w-f16-b", X(4, 3, dtype=H), Z(3), O(3), O(3), O(3, dtype=H), {"training": True}),
    ("bf16-f16-stats", X(4, 3, dtype=B16), Z(3, dtype=H), O(3, dtype=H), None, None, {"training": True}),
    ("bf16-f32-stats-bf16-w", X(4, 3, dtype=B16), Z(3), O(3), O(3, dtype=B16), None, {}),
    ("stats-2d", X(4, 3), Z(3, 1), O(3), None, None, {"training": True}),
    ("rv-2d-eval", X(4, 3), Z(3), O(1, 3), None, None, {}),
    ("empty-weight-0-elems", X(0, 3), Z(3), O(3), O(0), None, {"training": True}),
    ("rank0-train", torch.tensor(1.0), Z(3), O(3), None, None, {"training": True}),
]


@pytest.mark.parametrize("case", FUNCTIONAL_CASES, ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_errors_match_torch(case, backend):
    _, x, rm, rv, w, b, kwargs = case
    if case[0].startswith("eps") and not TORCH_213_EPS_WORDING:
        pytest.skip("torch < 2.13 words the eps checks differently")
    reason = backend.skip_reason(x, rm, rv, w, b)
    if reason is not None and case[0] != "rank0-train":
        pytest.skip(reason)
    clone = lambda t: None if t is None else t.clone()  # noqa: E731
    ours = outcome(lambda: backend.forward(x, clone(rm), clone(rv), w, b, kwargs))
    if case[0] == "rank0-train":
        # torch: IndexError from size[0] in _verify_batch_size; ours names the problem
        assert outcome(lambda: F.batch_norm(x, rm, rv, w, b, **kwargs))[0] is IndexError
        assert ours == (ValueError, "expected at least 2D input (got 0D input)")
        return
    expected = outcome(lambda: F.batch_norm(x, clone(rm), clone(rv), w, b, **kwargs))
    assert expected is not None, "torch accepted this input; the case is wrong"
    assert ours == (expected[0], backend.error_style(expected[1]))
