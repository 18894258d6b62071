"""The Rosetta stone (bncourse.conventions): PyTorch's row is re-probed against torch.nn, the
other rows are checked for internal consistency and against their documented update formulas."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from bncourse import conventions as cv
from bncourse.plotting import table_html

torch.set_num_threads(1)


def _batches(seed, shape, n=5, offset=3.0, scale=2.0):
    rng = np.random.default_rng(seed)
    return [rng.normal(offset, scale, size=shape) for _ in range(n)]


# ---------------------------------------------------------------- the PyTorch row is probed
def test_torch_row_matches_torch_defaults():
    row = cv.CONVENTIONS["torch"]
    bn = torch.nn.BatchNorm1d(4)
    assert bn.momentum == row.momentum
    assert bn.eps == row.eps
    assert torch.all(bn.running_mean == row.init_running_mean)
    assert torch.all(bn.running_var == row.init_running_var)


@pytest.mark.parametrize("shape", [(8, 3), (5, 3, 7), (4, 3, 2, 5)])
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_torch_simulation_matches_torch_running_stats(shape, momentum):
    batches = _batches(0, shape)
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)]
    bn = cls(3, momentum=momentum).double().train()
    for x in batches:
        bn(torch.from_numpy(x))
    rm, rv = cv.simulate_running_stats(batches, "torch", momentum=momentum)
    np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-12, atol=1e-12)


def test_torch_running_var_is_unbiased_not_biased():
    x = _batches(1, (4, 3), n=1)[0]
    bn = torch.nn.BatchNorm1d(3, momentum=1.0).double().train()
    bn(torch.from_numpy(x))
    np.testing.assert_allclose(bn.running_var.numpy(), x.var(axis=0, ddof=1), rtol=1e-12)
    assert not np.allclose(bn.running_var.numpy(), x.var(axis=0), rtol=1e-3)


def test_normalize_matches_torch_in_eval_and_train():
    x = _batches(2, (6, 3, 4))[0]
    bn = torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    g, b = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    mean, var, _ = cv.batch_statistics(x, "torch")
    y_train = bn.train()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(cv.normalize(x, mean, var, g, b, eps=bn.eps), y_train, rtol=1e-10, atol=1e-12)
    y_eval = bn.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(cv.normalize(x, bn.running_mean.numpy(), bn.running_var.numpy(), g, b, eps=bn.eps),
                               y_eval, rtol=1e-10, atol=1e-12)


def test_batch_statistics_pool_spatial_positions():
    x = _batches(3, (2, 3, 4, 5), n=1)[0]      # m' = 2 * 4 * 5 = 40 values per channel
    mean, var, run = cv.batch_statistics(x, "torch")
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean, flat.mean(axis=1))
    np.testing.assert_allclose(var, flat.var(axis=1))
    np.testing.assert_allclose(run, var * 40 / 39)
    _, var_k, run_k = cv.batch_statistics(x, "keras")
    np.testing.assert_allclose(run_k, var_k)


def test_batch_statistics_errors():
    with pytest.raises(ValueError, match="at least 2D"):
        cv.batch_statistics(np.zeros(3), "torch")
    with pytest.raises(ValueError, match="more than 1 value"):
        cv.batch_statistics(np.zeros((1, 3)), "torch")
    with pytest.raises(ValueError, match="unknown convention 'caffe'"):
        cv.batch_statistics(np.zeros((2, 3)), "caffe")


# ---------------------------------------------------------------- momentum conversions
def test_named_conversions():
    assert cv.torch_momentum_from_decay(0.99) == pytest.approx(0.01)
    assert cv.torch_momentum_from_decay(0.9) == pytest.approx(0.1)
    assert cv.decay_from_torch_momentum(0.1) == pytest.approx(0.9)
    assert cv.convert_momentum(0.99, "keras", "torch") == pytest.approx(0.01)
    assert cv.convert_momentum(0.1, "torch", "cs231n") == pytest.approx(0.9)
    assert cv.convert_momentum(0.99, "keras", "flax") == pytest.approx(0.99)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="must lie in"):
            cv.torch_momentum_from_decay(bad)
        with pytest.raises(ValueError, match="must lie in"):
            cv.convert_momentum(bad, "torch", "keras")


@settings(max_examples=50, deadline=None)
@given(m=st.floats(0.0, 1.0), src=st.sampled_from(sorted(cv.CONVENTIONS)), dst=st.sampled_from(sorted(cv.CONVENTIONS)))
def test_conversion_round_trip_and_same_update(m, src, dst):
    back = cv.convert_momentum(cv.convert_momentum(m, src, dst), dst, src)
    assert back == pytest.approx(m, abs=1e-12)
    # the converted momentum gives the same EMA step in the target convention
    running, stat = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    np.testing.assert_allclose(cv.ema_update(running, stat, m, src),
                               cv.ema_update(running, stat, cv.convert_momentum(m, src, dst), dst), atol=1e-12)


def test_ema_update_formulas():
    r, s = np.array([1.0]), np.array([3.0])
    assert cv.ema_update(r, s, 0.1, "torch")[0] == pytest.approx(0.9 * 1 + 0.1 * 3)
    assert cv.ema_update(r, s, 0.1, "keras")[0] == pytest.approx(0.1 * 1 + 0.9 * 3)
    assert cv.ema_update(r, s, 0.99, "flax")[0] == pytest.approx(0.99 * 1 + 0.01 * 3)
    with pytest.raises(ValueError, match="shape"):
        cv.ema_update(np.zeros(2), np.zeros(3), 0.1)


def test_keras_with_converted_momentum_differs_from_torch_only_by_bessel():
    """Same weight on the new value: running means agree, running variances differ because
    torch feeds the unbiased batch variance and Keras the biased one."""
    batches = _batches(4, (4, 3), n=200)
    rm_t, rv_t = cv.simulate_running_stats(batches, "torch", momentum=0.1)
    rm_k, rv_k = cv.simulate_running_stats(batches, "keras", momentum=0.9)
    np.testing.assert_allclose(rm_t, rm_k, rtol=1e-12)
    # after many steps the init is forgotten and the ratio is m/(m-1) = 4/3
    np.testing.assert_allclose(rv_t / rv_k, 4 / 3, rtol=1e-6)


def test_cs231n_starts_from_zero_running_var():
    x = _batches(5, (10, 2), n=1)
    _, rv = cv.simulate_running_stats(x, "cs231n")
    np.testing.assert_allclose(rv, 0.1 * x[0].var(axis=0))


def test_simulate_errors():
    with pytest.raises(ValueError, match="empty"):
        cv.simulate_running_stats([], "torch")
    with pytest.raises(ValueError, match="expected 4 channels"):
        cv.simulate_running_stats([np.zeros((2, 3))], "torch", num_channels=4)


# ---------------------------------------------------------------- the table as data
def test_table_is_consistent():
    rows = cv.table_rows()
    assert [r["framework"] for r in rows] == [c.framework for c in cv.CONVENTIONS.values()]
    for conv in cv.CONVENTIONS.values():
        assert conv.eps_placement == "inside sqrt"
        assert 0 < conv.update_weight < 1
    weights = {c.key: c.update_weight for c in cv.CONVENTIONS.values()}
    assert weights["torch"] == pytest.approx(0.1) and weights["cs231n"] == pytest.approx(0.1)
    assert weights["keras"] == pytest.approx(0.01) and weights["flax"] == pytest.approx(0.01)
    # only the torch row can be probed here; the others cite documentation and name what it does not settle
    assert [r["checked"].split(";")[0] for r in rows] == ["probed", "documented", "documented", "documented"]
    assert "not checked: running_var_estimator" in rows[1]["checked"]
    assert "not checked" in rows[2]["checked"] and "init_running_var" in rows[2]["checked"]
    assert all(r["documentation"] for r in rows)
    for conv in cv.CONVENTIONS.values():
        assert all(v.split(":")[0].split(" ")[0] in ("probed", "documented", "not") for v in conv.verified.values())
    html = table_html(list(rows[0]), [list(r.values()) for r in rows])  # the chapter's one table path
    assert html.count("<tr>") == len(rows) + 1 and "<td>keras.layers.BatchNormalization</td>" in html
