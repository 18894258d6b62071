"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from torch import nn

from bncourse.data import ImageData, load_images
from bncourse.models import mlp
from bncourse.training import set_seed


@pytest.fixture(scope="session")
def digits() -> ImageData:
    """scikit-learn's 8x8 digits as an ImageData (always available offline): 64 features, 10 classes."""
    return load_images("digits", verbose=False)


@pytest.fixture
def sigmoid_bn_mlp() -> nn.Sequential:
    """Ioffe & Szegedy's Fig. 1 network at digits scale: 64-32-32-10, sigmoid, BN, weights N(0, 0.1^2), seed 0."""
    set_seed(0)
    return mlp([64, 32, 32, 10], activation="sigmoid", norm="bn", init=0.1)
