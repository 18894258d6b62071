"""Compile bncourse.triton's kernels for an NVIDIA GPU (sm_90) without one, and check their loads.

Run as a script in a process where ``TRITON_INTERPRET`` is unset (``tests/core/test_triton.py`` does):
Triton's front end, its MLIR passes, LLVM and ``ptxas`` (shipped with Triton) all run on a CPU. For
both layouts (NCHW tile ``[4, 1, 1024]``, channel-innermost tile ``[64, 64, 1]``) and for float32 and
bfloat16 data, every kernel variant of a training and an evaluation step must compile, and the data
loads must be 16-byte vector loads (``ld.global.v4``), as the JIT produces for aligned tensors. Prints
one line per kernel and ``OK`` at the end.
"""
from __future__ import annotations

import re

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bncourse.triton import _kernels as K

TARGET = GPUTarget("cuda", 90, 32)
# arguments the JIT specializes as multiples of 16 for aligned tensors with such sizes
ALIGNED = {"x_ptr", "dy_ptr", "y_ptr", "dx_ptr", "part_ptr", "sr", "sc", "rows_per_split", "C", "S"}


def compile_kernel(fn, types: dict, consts: dict) -> str:
    sig = {n: ("constexpr" if n in consts else types.get(n, "*fp32")) for n in fn.arg_names}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]]
             for n in ALIGNED if n in fn.arg_names and n not in consts}
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                            target=TARGET, options={"num_warps": 8})
    return kernel.asm["ptx"]


def main() -> None:
    assert not K.INTERPRETED, "run with TRITON_INTERPRET unset"
    for dtype in ("fp32", "bf16"):
        data = "*" + dtype
        for blocks in ({"BLOCK_R": 4, "BLOCK_C": 1, "BLOCK_S": 1024},
                       {"BLOCK_R": 64, "BLOCK_C": 64, "BLOCK_S": 1, "sc": 1, "S": 1}):
            types = {"x_ptr": data, "dy_ptr": data, "y_ptr": data, "dx_ptr": data, "R": "i32",
                     "C": "i32", "S": "i32", "sr": "i32", "sc": "i32", "rows_per_split": "i32",
                     "n_splits": "i32", "count": "fp32", "momentum": "fp32", "eps": "fp32",
                     "unbias": "fp32"}
            variants = [
                (K._reduce_kernel, {"BACKWARD": False, "TRAINING": True}),
                (K._reduce_kernel, {"BACKWARD": True, "TRAINING": True}),
                (K._reduce_kernel, {"BACKWARD": True, "TRAINING": False}),
                (K._forward_kernel, {"TRAINING": True, "UPDATE_RUNNING": True, "HAS_W": True,
                                     "HAS_B": True, "SAVE": True, "BLOCK_K": 8}),
                (K._forward_kernel, {"TRAINING": False, "UPDATE_RUNNING": False, "HAS_W": True,
                                     "HAS_B": False, "SAVE": False, "BLOCK_K": 8}),
                (K._backward_kernel, {"TRAINING": True, "HAS_W": True, "SUMS": True,
                                      "NEED_X": True, "NEED_W": True, "NEED_B": True,
                                      "BLOCK_K": 8}),
                (K._backward_kernel, {"TRAINING": False, "HAS_W": True, "SUMS": False,
                                      "NEED_X": True, "NEED_W": False, "NEED_B": False,
                                      "BLOCK_K": 8}),
            ]
            for fn, flags in variants:
                ptx = compile_kernel(fn, types, {**blocks, **flags})
                loads = sorted(set(re.findall(r"ld\.global(?:\.[a-z0-9]+)*", ptx)))
                print(fn.__name__, dtype, blocks, flags, loads, flush=True)
                assert any(".v4." in ld for ld in loads), f"no vector loads in {fn.__name__}"
            # without dx, only per-channel sums are finished: one program per channel block
            compile_kernel(K._backward_kernel, types,
                           {**blocks, "BLOCK_R": 1, "BLOCK_S": 1, "TRAINING": True, "HAS_W": True,
                            "SUMS": True, "NEED_X": False, "NEED_W": True, "NEED_B": True,
                            "BLOCK_K": 8})
    print("OK")


if __name__ == "__main__":
    main()
