"""The worker's C heap: freed memory stays at the top of the heap instead of going back at once.

Request and response bodies (over 512 bytes, so outside CPython's own allocator) come from the C
library's malloc. glibc gives the top of its heap back to the system (``brk``) as soon as 128 KiB
of it is free, so a worker whose bodies in flight swing by a few hundred KiB shrinks and regrows
its heap many times a second, and every page it regrows is faulted in again. Measured under
``wrk -c64`` POSTing 16 KiB bodies to an echo app: one ``brk`` per 22 requests and 1.7 page
faults per request, 2.8% of the worker's time in the page-fault handler.

So the worker keeps up to ``TRIM_THRESHOLD`` free at the top (``mallopt(M_TRIM_THRESHOLD)``,
mallopt(3)). Setting it turns off glibc's sliding threshold for ``mmap``, which would otherwise
have moved allocations of up to 32 MiB into the heap after the first of them was freed; the
worker sets that threshold too (``MMAP_THRESHOLD``), so 1 MiB bodies still come from the heap
and do not cost an ``mmap``, a ``munmap`` and 256 page faults each. An allocation past it (a
large upload read whole) is mapped and given back when freed, as before.

Nothing changes when the operator set glibc's own knobs (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``: theirs win), or when the C library is not glibc
(musl's malloc has no such thresholds).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_heap_top"]

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
#: free bytes the heap keeps at its top before it gives memory back
TRIM_THRESHOLD: Final = 8 * 1024 * 1024
#: allocations from this size up are mapped on their own (and unmapped when freed)
MMAP_THRESHOLD: Final = 4 * 1024 * 1024
_OPERATOR_KNOBS: Final = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_heap_top(environ: Mapping[str, str] = os.environ) -> bool:
    """Set the worker's malloc thresholds (see the module docstring); ``True`` if they were."""
    if any(knob in environ for knob in _OPERATOR_KNOBS):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):  # no confstr name, no libc symbol
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on an error
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
