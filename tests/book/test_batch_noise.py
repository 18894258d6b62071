"""bncourse.batch_noise: ghost batch norm is BatchNorm on each chunk, and more batch noise shrinks the gap."""
import pytest
import torch
from torch import nn

from bncourse.batch_noise import GhostBatchNorm1d, ghost_gap_experiment
from bncourse.data import load_images

torch.set_num_threads(1)


def test_ghost_bn_is_bn_per_chunk_and_plain_bn_in_eval():
    torch.manual_seed(0)
    x = torch.randn(12, 3, dtype=torch.float64) * 2 + 1
    ghost = GhostBatchNorm1d(3, ghost_size=4).double()
    ref = nn.BatchNorm1d(3).double()
    y = ghost(x)
    expected = torch.cat([ref(c) for c in x.split(4)])      # three chunks: three running-stat updates
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ghost.running_mean, ref.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ghost.running_var, ref.running_var, rtol=1e-12, atol=1e-12)
    assert int(ghost.num_batches_tracked) == 3
    ghost.eval(), ref.eval()
    torch.testing.assert_close(ghost(x), ref(x), rtol=1e-12, atol=1e-12)
    big = GhostBatchNorm1d(3, ghost_size=64).double()
    torch.testing.assert_close(big(x), nn.BatchNorm1d(3).double()(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="ghost_size"):
        GhostBatchNorm1d(3, ghost_size=1)


def test_more_batch_noise_smaller_gap():
    try:
        data = load_images("fashion-mnist", verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    # seeds 0-4 measured: gap 0.58-0.62 with ghost batches of 8, 0.90-1.00 with 128; three seeds here
    for seed in range(3):
        r = ghost_gap_experiment(data, seed)
        assert r[8]["gap"] < r[128]["gap"] - 0.15
        assert r[8]["val_loss"] < r[128]["val_loss"] - 0.1
        assert r[128]["train_loss"] < r[8]["train_loss"]   # the noiseless net fits the training set closer
