"""bncourse.models: layer order, BN placement, biases, initialization statistics, hook helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bncourse.models import count_parameters, hidden_blocks, hidden_linears, hidden_preactivations, mlp, small_cnn

torch.set_num_threads(1)


def test_mlp_structure_bn_before_activation_without_bias():
    m = mlp([784, 100, 100, 100, 10], activation="sigmoid", norm="bn", init=0.1)
    assert [n for n, _ in m.named_children()] == ["hidden1", "hidden2", "hidden3", "out"]
    for block in hidden_blocks(m):
        assert [n for n, _ in block.named_children()] == ["linear", "norm", "act"]
        assert isinstance(block.norm, nn.BatchNorm1d) and isinstance(block.act, nn.Sigmoid)
        assert block.linear.bias is None  # beta subsumes it (Ioffe & Szegedy)
    assert isinstance(m.out, nn.Linear) and m.out.bias is not None
    assert hidden_preactivations(m) == [b.norm for b in hidden_blocks(m)]
    assert m(torch.randn(5, 784)).shape == (5, 10)
    # 784*100 + 2*100*100 weights, 3 BN layers of 2*100, output 100*10+10
    assert count_parameters(m) == 784 * 100 + 2 * 100 * 100 + 3 * 200 + 1010


def test_mlp_without_norm_has_biases_and_preactivation_is_linear():
    m = mlp([20, 8, 8, 3], activation="tanh")
    for block in hidden_blocks(m):
        assert [n for n, _ in block.named_children()] == ["linear", "act"]
        assert block.linear.bias is not None and torch.all(block.linear.bias == 0)
    assert hidden_preactivations(m) == hidden_linears(m)


def test_preactivation_hook_sees_the_activation_input():
    torch.manual_seed(0)
    m = mlp([6, 5, 4], activation="sigmoid", norm="bn").eval()
    seen = []
    h = hidden_preactivations(m)[0].register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(9, 6)
    m(x)
    h.remove()
    block = m.hidden1
    expected = block.norm(block.linear(x))
    torch.testing.assert_close(seen[0], expected)
    torch.testing.assert_close(block.act(seen[0]), torch.sigmoid(expected))


def test_norm_after_activation_and_explicit_bias():
    m = mlp([6, 5, 4], activation="relu", norm="bn", norm_position="after", dropout=0.2)
    block = m.hidden1
    assert [n for n, _ in block.named_children()] == ["linear", "act", "norm", "dropout"]
    assert block.linear.bias is not None  # the norm does not follow the Linear directly
    assert hidden_preactivations(m) == [block.linear]
    m2 = mlp([6, 5, 4], norm="bn", bias=True)
    assert m2.hidden1.linear.bias is not None


def test_layernorm_and_callable_norm():
    m = mlp([6, 5, 4], norm="ln")
    assert isinstance(m.hidden1.norm, nn.LayerNorm) and m.hidden1.norm.normalized_shape == (5,)
    widths = []

    def factory(w):
        widths.append(w)
        return nn.Identity()

    mlp([6, 5, 7, 4], norm=factory)
    assert widths == [5, 7]
    with pytest.raises(TypeError, match="nn.Module"):
        mlp([6, 5, 4], norm=lambda w: 3)


@pytest.mark.parametrize("init, std_fn", [
    (0.1, lambda fi, fo, act: 0.1),
    ("he", lambda fi, fo, act: math.sqrt(2.0 / fi) if act == "relu" else math.sqrt(1.0 / fi)),
    ("glorot", lambda fi, fo, act: math.sqrt(2.0 / (fi + fo))),
])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_init_std(init, std_fn, activation):
    torch.manual_seed(0)
    m = mlp([1000, 800, 600, 10], activation=activation, init=init)
    for block in hidden_blocks(m):
        w = block.linear.weight
        fo, fi = w.shape
        expected = std_fn(fi, fo, activation)
        # 480k / 600k samples: the sample std is within 1% of the true std with overwhelming probability
        assert w.std().item() == pytest.approx(expected, rel=0.01)
        assert abs(w.mean().item()) < 0.01 * expected
    out = m.out.weight
    lin_std = {0.1: 0.1, "he": math.sqrt(1 / 600), "glorot": math.sqrt(2 / 610)}[init]
    assert out.std().item() == pytest.approx(lin_std, rel=0.05)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="activation"):
        mlp([3, 2], activation="gelu2")
    with pytest.raises(ValueError, match="sizes"):
        mlp([3])
    with pytest.raises(ValueError, match="norm"):
        mlp([3, 4, 2], norm="gn")
    with pytest.raises(ValueError, match="init"):
        mlp([3, 4, 2], init="orthogonal")
    with pytest.raises(ValueError, match="init std"):
        mlp([3, 4, 2], init=-1.0)
    with pytest.raises(ValueError, match="norm_position"):
        mlp([3, 4, 2], norm_position="middle")


def test_course_batchnorm_option():
    bt = pytest.importorskip("bncourse.torch")
    if not hasattr(bt, "BatchNorm1d"):
        pytest.skip("bncourse.torch.BatchNorm1d not available yet")
    m = mlp([6, 5, 4], norm="bncourse")
    assert isinstance(m.hidden1.norm, bt.BatchNorm1d)


def test_small_cnn_shapes_and_bn2d():
    torch.manual_seed(0)
    m = small_cnn((1, 28, 28), 10, channels=(4, 8), norm="bn")
    assert isinstance(m.hidden1.norm, nn.BatchNorm2d) and m.hidden1.conv.bias is None
    assert [n for n, _ in m.hidden1.named_children()] == ["conv", "norm", "act", "pool"]
    assert hidden_linears(m) == [m.hidden1.conv, m.hidden2.conv]
    assert hidden_preactivations(m) == [m.hidden1.norm, m.hidden2.norm]
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    plain = small_cnn((1, 8, 8), 10, channels=(4,))
    assert plain.hidden1.conv.bias is not None and plain(torch.randn(2, 1, 8, 8)).shape == (2, 10)
