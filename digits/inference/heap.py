"""The heap of a process that reads uploads: memory freed by one upload is kept for the next.

Reading a 560×560 canvas makes temporaries of 0.25 to 2 MB (its 512×512 working image in float32, its masks).
glibc gave the freed ones back to the kernel, which zeroed every page again for the next upload: 1,318 page
faults a canvas, about 5 ms of 12 (60 canvases, one core, median of 5 passes). With allocations up to
MMAP_THRESHOLD taken from the heap, and up to TRIM_THRESHOLD of it kept when freed: 3 faults a canvas, and the
process's peak memory the same (85 MB). glibc moves its own thresholds up as large blocks are freed, but only
to twice the largest block for what it keeps, which a canvas's temporaries together outgrow.
"""

import ctypes

MMAP_THRESHOLD = 4 << 20  # twice the largest temporary of a 512×512 working image (float64, 2 MB); 2 MB left 61 faults
TRIM_THRESHOLD = 16 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def keep_freed_memory() -> bool:
    """Have this process's malloc keep what reading an upload frees, for the next one. False, and nothing changed,
    where the C library is not glibc (musl, macOS): theirs have no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
