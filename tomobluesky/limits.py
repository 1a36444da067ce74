"""The bounds every entry point checks, and the argparse types that check them on the command line.

A value outside them is almost surely a typo (2,000,000 projections for
2,000; a budget in bytes where gigabytes were meant), and each would
otherwise be found late: a disk filled by frames, a run that never ends, a
reconstruction killed for memory. This module imports nothing heavy, so
parsers can be built from it without loading the engine.
"""

from __future__ import annotations

import argparse
import math
import os

#: projections in one scan: real scans take a few hundred to some tens of thousands
#: (36,000 at the most demanding beamlines); ten times beyond that is a typo
MAX_PROJECTIONS = 100_000
#: darks or flats in one scan: normalisation takes their median, a few tens are plenty
MAX_DARKS_FLATS = 1_000
#: phantom widths in pixels: below 16 the phantom has no features, above 4096 it is a typo
PHANTOM_SIZES = (16, 4096)
#: TCP ports
PORTS = (1, 65535)
#: memory budget cap in GB where the machine's memory cannot be read
MEMORY_CAP_GB = 4096.0


def machine_memory_gb() -> float | None:
    """Physical memory of this machine in GB, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget_limit_gb() -> float:
    """The largest memory budget accepted: a budget above the machine's memory cannot be kept."""
    return round(machine_memory_gb() or MEMORY_CAP_GB, 1)


def check_memory_budget_gb(value: float) -> float:
    limit = memory_budget_limit_gb()
    if not (math.isfinite(value) and 0 < value <= limit):
        raise ValueError(f"a memory budget of {value:g} GB is outside the allowed range > 0 and <= {limit:g} GB "
                         "(this machine's memory)")
    return value


# --- argparse types ------------------------------------------------------------------------------------------

def _range_text(low, high, low_open) -> str:
    if low is not None and high is not None:
        return f"> {low:g} and <= {high:g}" if low_open else f"{low:g}..{high:g}"
    if low is not None:
        return f"> {low:g}" if low_open else f">= {low:g}"
    return f"<= {high:g}" if high is not None else "any finite number"


def bounded(kind, low=None, high=None, *, low_open: bool = False, unit: str = ""):
    """An argparse ``type``: a finite ``kind`` (int or float) within [low, high] (low excluded if ``low_open``).
    The error names the allowed range; argparse prefixes the option."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(
                f"{text} is outside the allowed range {_range_text(low, high, low_open)}{unit}")
        return value

    return parse


def memory_budget_gb(text: str) -> float:
    """An argparse ``type`` for a budget in GB: above 0, at most the machine's memory."""
    return bounded(float, 0, memory_budget_limit_gb(), low_open=True, unit=" GB (this machine's memory)")(text)


def algorithm_name(text: str) -> str:
    """An argparse ``type``: one of the engine's algorithms (the engine is imported only when the option
    is given, so building a parser stays cheap)."""
    from .recon import ALGORITHMS

    if text not in ALGORITHMS:
        raise argparse.ArgumentTypeError(f"unknown algorithm {text!r}; choose one of {', '.join(ALGORITHMS)}")
    return text
