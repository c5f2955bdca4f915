"""Keep freed memory in the process (glibc's malloc), so that the network's large tensors do
not cost the kernel a page fault per 4 KiB every time they are made.

By default glibc serves each allocation above its mmap threshold (128 KiB, rising to at most
32 MiB) with its own ``mmap`` and gives it back with ``munmap`` when freed. A 96³ training
step of batch 4 makes and frees gigabytes of such tensors, and each time the kernel maps and
zeroes the pages again: on the 2-core development machine half of the training process's CPU
time was the kernel's (9.4 s a step; 3.6 s with the setting below; docs/performance.md,
"Freed memory stays in the process").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

# Environment variables through which a user tunes the same settings; theirs win.
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Serve every allocation from malloc's heap (no ``mmap``) and never give the heap back
    to the kernel; freed memory is reused by the next allocations instead. The process keeps
    its peak memory until it exits. Returns whether the setting took effect: not on other
    C libraries or systems, nor when the environment already tunes malloc
    (``USER_SETTINGS``).
    """
    if sys.platform != "linux" or any(var in os.environ for var in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library by that name, or one without mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # -1: never trim (man 3 mallopt)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
