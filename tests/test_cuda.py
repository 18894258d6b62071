"""The torch parity suite on a CUDA device (skipped cleanly without one).

The test bodies are those of ``tests/test_torch_parity.py`` — ModuleInfo and OpInfo cases, train and
eval over several steps, channels_last, non-contiguous input, float16/bfloat16 input with float32 or
same-dtype parameters, empty batches, state_dict, conversion — imported here and run with the
``device`` fixture overridden to ``cuda``. Reference results come from torch.nn on the same device
(cuDNN or native CUDA kernels).
"""
from __future__ import annotations

import pytest
import torch

from test_torch_parity import (  # noqa: F401  (collected here with device="cuda")
    test_batchnorm_empty,
    test_buffer_flip_track_running_stats,
    test_channels_last_matches_torch_and_is_kept,
    test_constant_channel_gives_bias_not_nan,
    test_constructor_and_repr_match_torch,
    test_convert_batchnorm_on_small_cnn,
    test_convert_batchnorm_root_and_shared_tensors,
    test_eval_without_running_stats_uses_batch_stats,
    test_large_offset_small_std_float32_variance,
    test_module_cases_match_torch_over_steps,
    test_no_native_batch_norm_on_the_compute_path,
    test_non_contiguous_input_eval,
    test_non_contiguous_input_with_grads,
    test_old_checkpoint_without_num_batches_tracked,
    test_opinfo_samples_match_functional,
    test_opinfo_samples_match_functional_float32_direct,
    test_pickle_and_deepcopy_roundtrip,
    test_reduced_precision_input,
    test_simple_average,
    test_state_dict_both_ways,
    test_update_stats_train_changes_eval_does_not,
)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def device() -> str:
    return "cuda"


def test_outputs_stay_on_the_device_and_in_half():
    """test_batchnorm_nonaffine_cuda_half_input: half input, float32 non-affine BN, train and eval."""
    import bncourse.torch as bt
    m = bt.BatchNorm2d(3, affine=False, device="cuda")
    ref = torch.nn.BatchNorm2d(3, affine=False, device="cuda")
    x = torch.rand(16, 3, 24, 24, device="cuda", dtype=torch.half)
    for training in (True, False):
        m.train(training)
        ref.train(training)
        y = m(x)
        assert y.dtype == torch.half and y.device.type == "cuda"
        torch.testing.assert_close(y, ref(x), rtol=2 ** -10, atol=2 ** -10)
        torch.testing.assert_close(m.running_var, ref.running_var)
