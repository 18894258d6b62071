"""bncourse.folding: a folded layer equals Conv/Linear followed by eval-mode BN, and equals torch's own fusion."""
import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from bncourse.folding import bn_affine, fold_batchnorm, fold_sequential

torch.set_num_threads(1)


def _trained_bn(channels: int, dims: int, *, affine: bool = True, seed: int = 0) -> nn.Module:
    """A BN layer with non-trivial running statistics and affine parameters, in eval mode (float64)."""
    g = torch.Generator().manual_seed(seed)
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](channels, affine=affine).double()
    shape = (16, channels) + (5, 5) * (dims == 2)
    with torch.no_grad():
        for _ in range(3):
            bn(torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2)
        if affine:
            bn.weight.copy_(torch.rand(channels, generator=g, dtype=torch.float64) * 2 - 0.5)
            bn.bias.copy_(torch.randn(channels, generator=g, dtype=torch.float64))
    return bn.eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_fold_matches_torch_fusion_and_composition(bias, groups):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=groups, bias=bias).double().eval()
    bn = _trained_bn(6, 2)
    u = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    folded = fold_batchnorm(conv, bn)
    with torch.no_grad():
        # float64: both sides are a few multiply-adds away from each other, so 1e-12 is loose for them
        torch.testing.assert_close(folded(u), bn(conv(u)), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(folded(u), fuse_conv_bn_eval(conv, bn)(u), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(folded.weight, fuse_conv_bn_eval(conv, bn).weight, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
def test_linear_fold_matches_torch_fusion(affine):
    torch.manual_seed(2)
    lin = nn.Linear(5, 4).double().eval()
    bn = _trained_bn(4, 1, affine=affine)
    u = torch.randn(9, 5, dtype=torch.float64)
    folded = fold_batchnorm(lin, bn)
    with torch.no_grad():
        torch.testing.assert_close(folded(u), bn(lin(u)), rtol=1e-12, atol=1e-12)
        if affine:  # torch's fusion needs the affine parameters
            torch.testing.assert_close(folded(u), fuse_linear_bn_eval(lin, bn)(u), rtol=1e-12, atol=1e-12)


def test_fold_float32_within_rounding():
    # float32: the folded and unfolded paths round differently; the error is a few ulps of the output
    # magnitude per multiply-add (27 products per output here), well inside 1e-5 relative.
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 8, 3).eval()
    bn = _trained_bn(8, 2).float()
    u = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, bn)(u), bn(conv(u)), rtol=1e-5, atol=1e-5)


def test_inputs_untouched_and_affine_map():
    conv = nn.Conv2d(2, 3, 1).double().eval()
    bn = _trained_bn(3, 2)
    before = [t.clone() for t in (*conv.parameters(), *bn.parameters(), *bn.buffers())]
    fold_batchnorm(conv, bn)
    after = [*conv.parameters(), *bn.parameters(), *bn.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    a, c = bn_affine(bn)
    z = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(bn(z), a[:, None, None] * z + c[:, None, None], rtol=1e-12, atol=1e-12)


def test_fold_sequential_replaces_pairs():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 5, bias=False), nn.BatchNorm1d(5)).double()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 8, 8, dtype=torch.float64))
    model.eval()
    folded = fold_sequential(model)
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules()) == 0
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-12, atol=1e-12)


def test_errors():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Conv2d(2, 3, 1), bn)
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="4 output channels"):
        fold_batchnorm(nn.Conv2d(2, 4, 1), bn.eval())
    with pytest.raises(TypeError, match="ReLU"):
        fold_batchnorm(nn.ReLU(), bn.eval())
