"""How the C heap gives freed memory back: kept for the next body instead of returned at once.

Every read from an upstream socket is a new bytes object of up to 256 KB (the event loop's
read size), freed once its bytes are sent and written to disk. glibc hands the top of its
heap back to the kernel whenever more than twice its (moving) mmap threshold lies free there,
so each of those objects was taken again as fresh pages: 209 to 243 page faults per 1.1 MB
miss, every one a page the kernel zeroes first. Keeping freed heap up to a bound, and giving
objects under 4 MB their place on the heap, makes those reads reuse pages already mapped, and
so do the few-megabyte strings of a long playlist's rewrite and the RAM tier's copies of
HD segments (bench/HISTORY.md has the measurements). Larger objects get a mapping of their
own, which goes back to the kernel when they are freed.
"""

from __future__ import annotations

import ctypes

# mallopt(3) parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OWN_MAPPING_BYTES = 4 * 1024 * 1024


def keep_freed_heap(keep_bytes: int) -> bool:
    """Keep up to `keep_bytes` of freed heap mapped for reuse. False where the C library has
    no `mallopt` (not glibc) or refused the values: its defaults then stay."""
    if keep_bytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    keep = min(keep_bytes, 2**31 - 1)  # an int in C
    # Setting either stops glibc from moving both thresholds as it goes.
    return bool(mallopt(_M_MMAP_THRESHOLD, _OWN_MAPPING_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, keep)
    )
