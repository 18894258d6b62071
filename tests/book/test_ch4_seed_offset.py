"""Chapter 4's experiments follow BNCOURSE_SEED_OFFSET: seed s with offset k draws what seed s + k draws."""
import pytest
import torch

from bncourse.batch_noise import ghost_gap_experiment
from bncourse.data import load_images
from bncourse.seeding import SEED_OFFSET_ENV
from bncourse.spatial_bn import conv_norm_experiment

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images():
    try:
        return load_images("fashion-mnist", flatten=False, verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")


@pytest.fixture(scope="module")
def flat():
    try:
        return load_images("fashion-mnist", verbose=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")


def _shifted_equals_plain(monkeypatch, run):
    monkeypatch.setenv(SEED_OFFSET_ENV, "5")
    shifted = run(1)
    monkeypatch.delenv(SEED_OFFSET_ENV)
    assert run(6) == shifted
    assert run(1) != shifted


def test_ghost_gap_experiment_follows_the_offset(monkeypatch, flat):
    _shifted_equals_plain(monkeypatch, lambda seed: ghost_gap_experiment(
        flat, seed, ghost_sizes=(4, 16), n_train=64, epochs=1, batch_size=16, n_val=64))


def test_conv_norm_experiment_follows_the_offset(monkeypatch, images):
    _shifted_equals_plain(monkeypatch, lambda seed: conv_norm_experiment(
        images, seed, n_train=32, batch_size=8, n_val=64, channels=(2, 4)))


def test_conv_norm_experiment_on_shifted_images(images):
    r = conv_norm_experiment(images, 0, n_train=32, batch_size=8, n_val=64, channels=(2, 4), shift=3)
    assert set(r) == {"none", "BatchNorm2d", "per position", "none shifted", "BatchNorm2d shifted",
                      "per position shifted"}
    assert all(0.0 <= v <= 1.0 for v in r.values())
    with pytest.raises(ValueError, match="shift must be >= 0"):
        conv_norm_experiment(images, 0, n_train=32, batch_size=8, n_val=64, channels=(2, 4), shift=-1)
