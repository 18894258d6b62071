"""Chapter 7's "find the bug" exercises: five classic BatchNorm mistakes, one multiple-choice question each.

Each question describes a piece of code and its symptom; the learner names the bug. The right option names
the mistake and the fix; every wrong option is a typical wrong diagnosis and gets its own message saying why
it does not explain the symptom. The chapter shows the code of each case above its question and displays the
question with one call:

* :func:`missing_eval` — predicting with BN still in training mode;
* :func:`momentum_convention` — Keras's ``momentum=0.99`` copied into PyTorch, whose momentum means the opposite;
* :func:`batch_of_one` — an epoch whose last batch holds one sample;
* :func:`finetune_train_mode` — BN left in training mode while fine-tuning with two images per device;
* :func:`data_parallel_plain_bn` — plain BN in a data-parallel model with few samples per worker.

:data:`EXERCISES` maps each function's name to it (the tests go through all of them).
"""
from __future__ import annotations

from typing import Callable

from bncourse.exercises import MultipleChoice

__all__ = ["missing_eval", "momentum_convention", "batch_of_one", "finetune_train_mode",
           "data_parallel_plain_bn", "EXERCISES"]


def missing_eval() -> MultipleChoice:
    """Bug: predictions made with BN in training mode (no ``model.eval()``)."""
    return MultipleChoice(
        id="ch7-bug-missing-eval",
        prompt="Find the bug. Right after its training loop, a BN network is evaluated with "
               "`preds = torch.cat([model(x_val[i:i + 64]).argmax(1) for i in range(0, len(x_val), 64)])`. "
               "The validation accuracy is lower than expected, and it changes when the loop's batch size "
               "changes (with 8 instead of 64 it drops further). What is wrong?",
        options=["The model is still in training mode: each BN layer normalizes every validation batch with that "
                 "batch's own statistics (and updates its running statistics). Call `model.eval()` first.",
                 "The loop lacks `torch.no_grad()`.",
                 "BN's momentum is too small, so the running statistics lag behind the weights.",
                 "Validation batches must be exactly as large as the training batches."],
        answer=0,
        feedback={1: "`torch.no_grad()` saves memory and time, but it changes no output: BN in training mode "
                     "still normalizes with the batch's statistics inside `no_grad`. The bug is the missing "
                     "`model.eval()`.",
                  2: "In training mode the running statistics are not used at all, so their lag cannot make the "
                     "accuracy depend on the loop's batch size. The bug is the missing `model.eval()`.",
                  3: "Matching the batch size only makes the batch statistics as noisy as in training; a prediction "
                     "would still depend on the other samples of its batch. In evaluation mode "
                     "(`model.eval()`) the batch size does not matter."},
        hint="Does one sample's prediction depend on the other samples of its batch here?",
        explanation="A missing `model.eval()`: in training mode a prediction depends on its batch, and every "
                    "forward pass moves the running statistics. `pitfalls.bn_in_train_mode(model)` finds it.")


def momentum_convention() -> MultipleChoice:
    """Bug: Keras/Flax's momentum (weight of the old value) used as PyTorch's (weight of the new batch)."""
    return MultipleChoice(
        id="ch7-bug-momentum-convention",
        prompt="Find the bug. A Keras model with `BatchNormalization(momentum=0.99)` is ported to PyTorch as "
               "`nn.BatchNorm1d(C, momentum=0.99)`, with the trained weights copied over. After a few more "
               "training steps, the evaluation-mode accuracy jumps from one check to the next, and the running "
               "mean equals the last training batch's mean almost exactly. What is wrong?",
        options=["`momentum=0.99` in PyTorch weights the *new* batch by 0.99: PyTorch's momentum is 1 − Keras's. "
                 "Keras's 0.99 is PyTorch's `momentum=0.01`.",
                 "Use PyTorch's default `momentum=0.1`: it is the same as Keras's default.",
                 "`eps` must be ported too: Keras's default is $10^{-3}$, PyTorch's $10^{-5}$.",
                 "Keras stores the biased running variance and PyTorch the unbiased one, so the running "
                 "statistics cannot match."],
        answer=0,
        feedback={1: "PyTorch's 0.1 is Keras's 0.9, not 0.99: a memory ten times shorter than the Keras model's. "
                     "The bug is the swapped convention: convert with 1 − 0.99 = 0.01.",
                  2: "Worth checking when porting (it changes $\\hat{x}$ of low-variance features), but `eps` does "
                     "not decide how fast the running mean follows the batches. The bug is the momentum "
                     "convention: PyTorch's momentum weights the new batch.",
                  3: "That difference is a factor $m/(m-1)$ in the running variance; it cannot make the running "
                     "mean copy the last batch. The bug is the momentum convention."},
        hint="PyTorch: $r \\leftarrow (1-\\alpha)\\,r + \\alpha\\,s$. Keras and Flax: "
             "$r \\leftarrow \\beta\\,r + (1-\\beta)\\,s$.",
        explanation="The two frameworks' momenta are complements: `conventions.convert_momentum(0.99, 'keras', "
                    "'torch')` gives 0.01.")


def batch_of_one() -> MultipleChoice:
    """Bug: the last batch of an epoch holds a single sample."""
    return MultipleChoice(
        id="ch7-bug-batch-of-one",
        prompt="Find the bug. A BN MLP trains on a data set of 10 001 samples with "
               "`DataLoader(ds, batch_size=100, shuffle=True)`. Every epoch runs for 100 steps and then stops "
               "with `ValueError: Expected more than 1 value per channel when training`. What is wrong?",
        options=["The last batch of each epoch holds a single sample, and BN cannot normalize one value per "
                 "channel in training mode (its variance is 0). Use `drop_last=True` or another batch size.",
                 "The model must be switched to `model.eval()` for the last batch.",
                 "BN needs the features in the last dimension: transpose the input to (C, N).",
                 "A batch size of 100 is too large for BN."],
        answer=0,
        feedback={1: "That silences the error but trains one step with the running statistics instead of the "
                     "batch's, silently; the real bug is the batch of one: 10 001 = 100 × 100 + 1. Drop it "
                     "(`drop_last=True`).",
                  2: "`BatchNorm1d` takes (N, C): the error says there is one value per channel, i.e. a batch "
                     "with N = 1, the last one of the epoch (10 001 = 100 × 100 + 1).",
                  3: "Larger batches make BN's statistics better, not worse. The failing batch is the last one, "
                     "with a single sample."},
        hint="How many samples are left for the last batch? `pitfalls.last_batch_size(10_001, 100)`.",
        explanation="10 001 = 100 × 100 + 1: the 101st batch holds one sample. `drop_last=True` drops it.")


def finetune_train_mode() -> MultipleChoice:
    """Bug: BN left in training mode while fine-tuning with tiny batches."""
    return MultipleChoice(
        id="ch7-bug-finetune-train-mode",
        prompt="Find the bug. A pretrained ResNet is fine-tuned on a data set close to its pretraining data with "
               "2 images per GPU. The code calls `model.train()` and leaves the BN layers as they are. The "
               "training loss falls, but the validation accuracy drops steadily from the pretrained model's. "
               "What is wrong?",
        options=["BN is left in training mode with batches of 2: it normalizes with nearly pure noise, and its "
                 "running statistics drift with it. Freeze BN (e.g. `pitfalls.freeze_batchnorm`, a module that "
                 "`model.train()` cannot undo).",
                 "The learning rate must be scaled *up* for such small batches.",
                 "Call `requires_grad_(False)` on the BN layers.",
                 "Remove the BN layers for fine-tuning."],
        answer=0,
        feedback={1: "Small batches call for a smaller learning rate, if anything; and no learning rate removes "
                     "the noise of statistics computed from 2 images. The bug is BN in training mode with "
                     "tiny batches.",
                  2: "That freezes γ and β but not the running statistics: they are buffers, updated by every "
                     "forward pass in training mode, so they still drift with the noisy batches (bug 4 of the "
                     "bug clinic).",
                  3: "The pretrained weights expect normalized inputs; without BN they no longer fit. The bug is BN left in "
                     "training mode with tiny batches: keep BN, frozen (statistics fixed, usually γ and β too)."},
        hint="How many values does each BN statistic come from, and what happens to the running statistics?",
        explanation="With 2 images per device, BN's batch statistics are noise and the running statistics drift: "
                    "detection and segmentation code freezes BN for this reason.")


def data_parallel_plain_bn() -> MultipleChoice:
    """Bug: plain BN in a data-parallel model, so each worker normalizes with its own small share."""
    return MultipleChoice(
        id="ch7-bug-data-parallel-bn",
        prompt="Find the bug. A model with `nn.BatchNorm2d` is wrapped in `DistributedDataParallel` on 16 GPUs "
               "with 2 images each (global batch 32). It ends clearly worse than the same model trained on "
               "one device with batches of 32, with the same learning rate and the same number of steps. "
               "What is wrong?",
        options=["Plain BN normalizes with each GPU's own 2 images, not the global 32: convert the model with "
                 "`SyncBatchNorm.convert_sync_batchnorm` so that the workers share their statistics.",
                 "DDP averages the gradients, so the learning rate must be multiplied by 16.",
                 "The GPUs' running statistics differ; they must be all-reduced after every step.",
                 "The all-reduce sums in a different order than one device would, and the rounding adds up."],
        answer=0,
        feedback={1: "DDP's averaged gradient is the gradient of the global batch's mean loss, the same as one "
                     "device with batch 32 for every layer except BN. The bug is plain BN: each worker "
                     "normalizes with the statistics of its 2 images.",
                  2: "The running statistics are used in evaluation only (DDP broadcasts rank 0's); in training "
                     "each worker's plain BN normalizes with its own 2 images. That local normalization is the bug.",
                  3: "Float32 rounding moves results in the last bits, not systematically. The bug is plain BN normalizing each worker's 2 images."},
        hint="Which samples does one GPU's BN layer see in a forward pass?",
        explanation="In data-parallel training plain BN sees the per-worker batch. With few samples per worker, "
                    "SyncBN gives every worker the global batch's statistics.")


#: Every exercise of this module, by name: name -> function that builds the question.
EXERCISES: dict[str, Callable[[], MultipleChoice]] = {
    f.__name__: f for f in (missing_eval, momentum_convention, batch_of_one, finetune_train_mode,
                            data_parallel_plain_bn)}
