"""What the installed torch supports, for tests that compare against it.

The reference is torch 2.13 (what CI installs). Older releases (e.g. a CUDA machine's 2.11) differ in two ways
that are not bncourse's business: ``torch.nn.BatchNorm*d`` has no keyword-only ``bias=``, and the eps checks are
worded "eps must be positive, but got ...". Tests of those two things skip there; everything else runs.
"""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
TORCH_HAS_BIAS_KW = "bias" in inspect.signature(nn.BatchNorm1d.__init__).parameters
TORCH_213_EPS_WORDING = TORCH_VERSION >= (2, 13)

needs_bias_kw = pytest.mark.skipif(not TORCH_HAS_BIAS_KW, reason="torch.nn BN has no bias= here")
needs_213_eps_wording = pytest.mark.skipif(not TORCH_213_EPS_WORDING,
                                           reason="torch < 2.13 words the eps checks differently")
