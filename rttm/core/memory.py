"""Keep the ingestion's heap from creeping up: glibc malloc settings, applied at start.

librdkafka's threads allocate the messages they fetch and the worker thread frees them,
so with glibc's defaults (up to eight arenas per core, and a threshold for serving large
blocks by ``mmap`` that grows up to 32 MiB) freed memory stays spread over many arenas
and heaps, and the peak RSS of a long catch-up kept growing after the rows in flight had
stopped growing (10M messages over 60 partitions: 417 MB). Two arenas, and ``mmap`` from
128 KiB on (such blocks go back to the system when freed), took the peak of a 5M-message
catch-up over 60 partitions from 384 MB to 322-352 MB at the same speed, and the 10M one
to 334 MB (benchmarks/README.md, "Catching up").

Only on glibc, and only before the process starts threads: the arena limit is fixed when
a second arena is first needed.
"""

from __future__ import annotations

import ctypes
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: malloc arenas of the process (glibc: 8 per core).
ARENAS = 2
#: Blocks of at least this many bytes come from ``mmap`` and go back to the system.
MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: leave them be
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    arenas = mallopt(_M_ARENA_MAX, ARENAS)
    return bool(arenas) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
