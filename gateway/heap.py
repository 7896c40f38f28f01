"""How the C heap gives freed memory back: kept for the next body instead of returned at once.

A long playlist's rewrite makes a new string of a megabyte or more, freed when the next
rewrite replaces it; so are the RAM tier's copies of HD segments when they leave it. glibc
hands the top of its heap back to the kernel whenever more than twice its (moving) mmap
threshold lies free there, and gives objects above that threshold a mapping of their own,
so each of those objects was taken again as fresh pages, every one zeroed by the kernel
first: about 590 page faults per rewrite of a 10,000-segment playlist, against about 10 with
freed heap kept up to a bound and objects under 4 MB placed on the heap (bench/HISTORY.md).
The reads of a cold miss faulted the same way once (209 to 243 faults per 1.1 MB miss); a
fill now keeps only its newest chunks, and with freed heap kept they reuse their pages
whatever the body's size (under the C library's policy, only while the heap freed after a
miss stays under its trim threshold, about 1 MB here).
Objects of 4 MB and more still get a mapping of their own, which goes back to the kernel
when they are freed.
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
