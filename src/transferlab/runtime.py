"""Process-wide settings, owned here and applied only by entry points (the CLI, ``train()``,
benchmarks): the compute device, the thread count and the allocator. Importing a module or
constructing a predictor never changes them.

The allocator setting matters on CPU: glibc returns every large freed buffer to the kernel, so each
forward pass page-faults its activations back in; measured here, half of an efficientnet_lite0
forward pass went to the kernel (77 -> ~200 img/s at batch 16 with :func:`tune_malloc`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "set_threads", "tune_malloc", "configure", "cpu_count"]


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(name: str = "auto") -> torch.device:
    import torch  # here, not at the top: tune_malloc and cpu_count need no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for, but CUDA is not available here; use --device cpu")
    return dev


def set_threads() -> int:
    """Use every core this process may run on for intra-op parallelism (shared out among the
    processes ``torchrun`` started on this machine; ``TRANSFERLAB_THREADS`` sets the number
    outright), and keep freed activation buffers in the heap (see :func:`tune_malloc`)."""
    import torch

    n = int(os.environ.get("TRANSFERLAB_THREADS", "0") or 0)
    n = n if n > 0 else max(1, cpu_count() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.set_num_threads(n)
    tune_malloc()
    return n


def tune_malloc(threshold: int = 1 << 30) -> bool:
    """Stop glibc from returning every large buffer to the kernel.

    By default glibc serves allocations over 128 KiB-32 MiB with mmap and unmaps them on free,
    so each forward pass page-faults its activations in again: measured here, half the CPU time
    of an efficientnet_lite0 forward went to the kernel (77 -> 208 img/s at batch 16 with this).
    Returns whether the setting took (False off glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(libc.mallopt(m_trim_threshold, threshold))
    except (OSError, AttributeError):
        return False


def configure(device: str = "auto", threads: bool = True) -> torch.device:
    """What an entry point calls once: the device, every core for intra-op parallelism and the
    allocator setting. Returns the device."""
    if threads:
        set_threads()
    return resolve_device(device)
