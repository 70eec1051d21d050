"""Kernel tests: Triton runs in its CPU interpreter where there is no GPU.

``TRITON_INTERPRET`` is read when a kernel is *defined*, i.e. when
``lgn_fpga.kernels.triton_kernels`` is imported, so it is set here, before any
test module of this directory imports it.  With a GPU the same tests run the
compiled kernels on CUDA tensors instead.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
