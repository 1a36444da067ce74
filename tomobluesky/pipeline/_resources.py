"""What the process costs: peak resident memory and bytes read through the kernel."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (10^6 bytes).

    Linux's ``VmHWM`` first: ``getrusage``'s ru_maxrss survives ``exec``, so a
    child started from a big parent would report the parent's peak."""
    own = process_peak_rss_mb("self")
    if own is not None:
        return own
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def current_rss_bytes() -> int:
    """Resident set size now (Linux; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:
        return int(peak_rss_mb() * 1e6)


def bytes_read() -> int:
    """Bytes the calling thread has read through read() calls (page cache included), or -1 if unknown.
    Per thread: the stop path's writer thread reads too (Zarr chunks) while the reader thread works."""
    try:
        with open("/proc/thread-self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def process_peak_rss_mb(pid) -> float | None:
    """Peak resident set size of a live process (Linux ``VmHWM``; ``pid`` or "self"), in MB; None when unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None
