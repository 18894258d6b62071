"""Tests of recurrent BN as published (bncourse.recurrent.RecurrentBatchNorm and the 'bn_rec' RowRNN): γ and β
shared across time, statistics per time step, the last step's statistics beyond the training length."""
import pytest
import torch
import torch.nn.functional as F

from bncourse import recurrent
from bncourse.seeding import set_seed

torch.set_num_threads(1)


def _layer(c=5, steps=4, **kw):
    layer = recurrent.RecurrentBatchNorm(c, steps, **kw).double()
    with torch.no_grad():                          # distinct per-step buffers, so that a wrong index shows
        layer.running_mean.copy_(torch.randn(steps, c, dtype=torch.float64))
        layer.running_var.copy_(torch.rand(steps, c, dtype=torch.float64) + 0.5)
    return layer


def test_parameters_are_shared_and_gamma_starts_at_one_tenth():
    layer = recurrent.RecurrentBatchNorm(6, 10)
    assert layer.weight.shape == (6,) and torch.all(layer.weight == 0.1) and layer.bias is None
    assert layer.running_mean.shape == layer.running_var.shape == (10, 6)
    with_bias = recurrent.RecurrentBatchNorm(6, 10, bias=True, gamma_init=1.0)
    assert with_bias.bias.shape == (6,) and torch.all(with_bias.bias == 0) and torch.all(with_bias.weight == 1)
    # one γ per unit whatever the length: the parameters do not grow with the number of steps
    short, long = recurrent.RowRNN("bn_rec", n_in=3, hidden=4, steps=2), recurrent.RowRNN("bn_rec", n_in=3, hidden=4,
                                                                                       steps=30)
    assert [p.shape for p in short.parameters()] == [p.shape for p in long.parameters()]
    step = recurrent.RowRNN("bn_step", n_in=3, hidden=4, steps=30)
    assert sum(p.numel() for p in step.parameters()) > sum(p.numel() for p in long.parameters())


@pytest.mark.parametrize("bias", [False, True])
def test_training_step_is_batch_norm_with_that_steps_buffers(bias):
    """Training at step t is F.batch_norm with the shared γ, β and the buffers of row t; other rows stay."""
    layer = _layer(bias=bias).train()
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 2, 5, dtype=torch.float64))
        if bias:
            layer.bias.copy_(torch.linspace(-1, 1, 5, dtype=torch.float64))
    before_mean, before_var = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.randn(7, 5, dtype=torch.float64) * 3 + 2
    for t in (2, 0):
        rm, rv = layer.running_mean[t].clone(), layer.running_var[t].clone()
        expected = F.batch_norm(x, rm, rv, layer.weight, layer.bias, training=True, momentum=0.1, eps=1e-5)
        torch.testing.assert_close(layer(x, t), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.running_mean[t], rm, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.running_var[t], rv, rtol=1e-12, atol=1e-12)
    for t in (1, 3):                                                     # untouched steps
        assert torch.equal(layer.running_mean[t], before_mean[t]) and torch.equal(layer.running_var[t], before_var[t])


def test_eval_uses_each_steps_statistics_and_the_last_beyond_the_training_length():
    layer = _layer(steps=4).eval()
    x = torch.randn(6, 5, dtype=torch.float64)
    for t in range(4):
        expected = F.batch_norm(x, layer.running_mean[t], layer.running_var[t], layer.weight, None, training=False)
        torch.testing.assert_close(layer(x, t), expected, rtol=1e-12, atol=1e-12)
    assert [layer.statistics_step(t) for t in (0, 3, 4, 50)] == [0, 3, 3, 3]
    for t in (4, 9, 50):
        assert torch.equal(layer(x, t), layer(x, 3))
    assert not torch.equal(layer(x, 2), layer(x, 3))


def test_gradients_reach_the_shared_gamma_from_every_step():
    layer = _layer(steps=3).train()
    x = [torch.randn(5, 5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b, c: sum(layer(v, t).sin().sum() for t, v in enumerate((a, b, c))),
                                    tuple(x))
    # dL/dγ is the sum over the steps of Σ_n g_t x̂_t: one γ receives every step's gradient
    g = [torch.randn(5, 5, dtype=torch.float64) for _ in range(3)]
    layer.zero_grad()
    sum((layer(v, t) * g[t]).sum() for t, v in enumerate(x)).backward()
    expected = sum((F.batch_norm(v.detach(), None, None, training=True) * g[t]).sum(0) for t, v in enumerate(x))
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-12, atol=1e-12)


def test_errors():
    layer = recurrent.RecurrentBatchNorm(4, 3)
    with pytest.raises(ValueError, match="steps 0..2"):
        layer(torch.randn(5, 4), 3)                      # training past the longest training sequence
    with pytest.raises(ValueError, match=r"expected input \(N, 4\)"):
        layer(torch.randn(5, 3), 0)
    with pytest.raises(ValueError, match="more than 1 value"):
        layer(torch.randn(1, 4), 0)
    with pytest.raises(ValueError, match=">= 0"):
        layer.eval()(torch.randn(5, 4), -1)
    with pytest.raises(ValueError, match="positive"):
        recurrent.RecurrentBatchNorm(4, 0)
    with pytest.raises(ValueError, match="two terms"):
        recurrent.RowRNN("bn_rec").norm_at(0)
    with pytest.raises(ValueError, match="per-step statistics"):
        recurrent.normalized_offset(recurrent.RowRNN("ln"), torch.rand(2, 28, 28))


def test_row_rnn_bn_rec_normalizes_both_terms_per_step():
    """h_t = tanh(BN_t(W_x x_t) + BN_t(W_h h_{t-1}) + b), written out step by step."""
    set_seed(0)
    model = recurrent.RowRNN("bn_rec", n_in=3, hidden=4, steps=5).double()
    with torch.no_grad():
        for layer in model.norms:
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2)
        model.bias.normal_()
    model.eval()
    x = torch.randn(6, 7, 3, dtype=torch.float64)                       # 7 steps > 5: the last two reuse step 4
    h = torch.zeros(6, 4, dtype=torch.float64)
    with torch.no_grad():
        for t in range(7):
            s = min(t, 4)
            bx, bh = model.norms
            u = F.batch_norm(x[:, t] @ model.w_x.weight.T, bx.running_mean[s], bx.running_var[s], bx.weight)
            v = F.batch_norm(h @ model.w_h.weight.T, bh.running_mean[s], bh.running_var[s], bh.weight)
            h = torch.tanh(u + v + model.bias)
        torch.testing.assert_close(model(x), model.out(h), rtol=1e-12, atol=1e-12)
        assert model.preactivations(x).shape == (6, 7, 8)


def test_normalized_offset_uses_the_statistics_of_each_step():
    set_seed(1)
    x = torch.randn(50, 6, 3)
    for kind in ("bn_step", "bn_rec"):
        model = recurrent.train_row_rnn(kind, x[:, :4], torch.randint(0, 10, (50,)), steps=3, batch_size=16,
                                        hidden=5)
        off = recurrent.normalized_offset(model, x)
        a = model.preactivations(x)
        for t in (1, 5):                                                # a trained step, and one beyond T = 4
            s = min(t, 3)
            if kind == "bn_step":
                layer = model.norms[s]
                mean, std = layer.running_mean, (layer.running_var + layer.eps).sqrt()
            else:
                mean = torch.cat([layer.running_mean[s] for layer in model.norms])
                std = torch.cat([(layer.running_var[s] + layer.eps).sqrt() for layer in model.norms])
            expected = ((a[:, t] - mean) / std).mean(0).abs().mean()
            torch.testing.assert_close(off[t], expected)
        assert off.shape == (6,)


def test_seed_offset_moves_recurrent_bn(monkeypatch):
    x, y = torch.rand(40, 4, 3), torch.randint(0, 10, (40,))
    run = lambda s: recurrent.train_row_rnn("bn_rec", x, y, steps=3, batch_size=8, hidden=4,  # noqa: E731
                                            seed=s).norms[1].running_mean.clone()
    monkeypatch.delenv("BNCOURSE_SEED_OFFSET", raising=False)
    base, target = run(2), run(9)
    assert not torch.equal(base, target)
    monkeypatch.setenv("BNCOURSE_SEED_OFFSET", "7")
    assert torch.equal(run(2), target)
