"""bncourse.spatial_bn: per-position BN is BatchNorm1d on the flattened map; per-channel BN is shift-equivariant,
per-position BN is not."""
import pytest
import torch
from torch import nn

from bncourse.models import small_cnn
from bncourse.spatial_bn import PerPositionBatchNorm, per_position_norm, shift_equivariance_error

torch.set_num_threads(1)


def _trained(norm: nn.Module, shape) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    norm = norm.double().train()
    with torch.no_grad():
        for _ in range(5):
            # a position-dependent input, so that per-position statistics differ from place to place
            ramp = torch.linspace(0, 3, shape[-1], dtype=torch.float64)
            norm(torch.randn((16, *shape), generator=g, dtype=torch.float64) + ramp)
    return norm.eval()


def test_per_position_is_bn1d_on_flattened_map():
    x = torch.randn(8, 3, 4, 5, dtype=torch.float64)
    pp = PerPositionBatchNorm((3, 4, 5)).double()
    ref = nn.BatchNorm1d(60).double()
    torch.testing.assert_close(pp(x), ref(x.flatten(1)).view_as(x), rtol=1e-12, atol=1e-12)
    assert pp.bn.running_mean.numel() == 60 and nn.BatchNorm2d(3).running_mean.numel() == 3
    with pytest.raises(ValueError, match="expected input of shape"):
        pp(torch.randn(2, 3, 5, 4))


def test_shift_equivariance():
    shape = (3, 6, 6)
    x = torch.randn(4, *shape, dtype=torch.float64)
    per_channel = _trained(nn.BatchNorm2d(3), shape)
    per_position = _trained(PerPositionBatchNorm(shape), shape)
    assert shift_equivariance_error(per_channel, x) == 0.0       # the same affine map at every position
    assert shift_equivariance_error(per_position, x) > 0.1
    assert not per_channel.training and not per_position.training


def test_per_position_factory_builds_a_cnn():
    model = small_cnn((1, 28, 28), channels=(4, 8), norm=per_position_norm((28, 28)))
    shapes = [m.shape for m in model.modules() if isinstance(m, PerPositionBatchNorm)]
    assert shapes == [(4, 28, 28), (8, 14, 14)]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
