"""Processing steps, found by entry point.

A step is a plain function ``step(array, **params) -> array | dict``
published by an installed package under the entry-point group
``tomobluesky.steps``. It says which layout it works on with the attribute
``pattern`` ("projections": angles × rows × columns, "sinograms": rows ×
angles × columns, "volume": slices × y × x, the default), and how many
neighbouring rows or slices it needs on each side of a slab with ``halo``.
tomobluesky's own steps are registered the same way, in its pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from dataclasses import dataclass
from functools import lru_cache

GROUP = "tomobluesky.steps"
PATTERNS = ("projections", "sinograms", "volume")


class StepError(ValueError):
    """A step that cannot be found or used as given."""


@dataclass(frozen=True)
class Step:
    """One registered step: its function and what it declares."""

    name: str
    function: object
    pattern: str
    halo: int
    whole: bool  # takes the whole volume as one lazy, slab-chunked dask array (it works slab by slab itself)
    package: str | None
    version: str | None
    entry_point: str

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters a pipeline may set (everything after the array)."""
        params = list(inspect.signature(self.function).parameters.values())[1:]
        return {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.function) or ""

    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


def _describe(ep) -> Step:
    try:
        function = ep.load()
    except Exception as err:  # a broken plugin package must not hide the others
        raise StepError(f"step {ep.name!r} ({ep.value}) cannot be loaded: {type(err).__name__}: {err}") from err
    if not callable(function):
        raise StepError(f"step {ep.name!r} ({ep.value}) is not a function")
    pattern = getattr(function, "pattern", "volume")
    if pattern not in PATTERNS:
        raise StepError(f"step {ep.name!r} declares pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
    halo = getattr(function, "halo", 0)
    if not isinstance(halo, int) or isinstance(halo, bool) or halo < 0:
        raise StepError(f"step {ep.name!r} declares halo {halo!r}; it must be a whole number ≥ 0")
    if halo and pattern == "sinograms":  # a slab's sinograms come without neighbouring rows: it would be ignored
        raise StepError(f"step {ep.name!r} declares halo {halo} on sinograms; a sinogram step gets whole "
                        "sinograms of a slab's rows, without neighbours. Declare it on projections instead")
    if not list(inspect.signature(function).parameters):
        raise StepError(f"step {ep.name!r} takes no array argument")
    dist = getattr(ep, "dist", None)
    return Step(ep.name, function, pattern, halo, bool(getattr(function, "whole_volume", False)),
                dist.name if dist else None, dist.version if dist else None, ep.value)


@lru_cache(maxsize=1)
def _entry_points() -> tuple:
    return tuple(importlib.metadata.entry_points(group=GROUP))


def refresh():
    """Forget what was found (after installing a plugin package in a running session)."""
    _entry_points.cache_clear()
    _available.cache_clear()


def available_steps() -> dict[str, Step | StepError]:
    """Every installed step by name; a step that fails to load maps to its error (shown by ``tomobluesky steps``).

    Found once per process (package metadata is read from disk: every scan would read it again)."""
    return dict(_available())


@lru_cache(maxsize=1)
def _available() -> dict[str, Step | StepError]:
    found: dict[str, Step | StepError] = {}
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if ep.name in found:  # two packages claiming one name: refuse both rather than pick one silently
            found[ep.name] = StepError(f"step {ep.name!r} is registered twice ({ep.value} and another package)")
            continue
        try:
            found[ep.name] = _describe(ep)
        except StepError as err:
            found[ep.name] = err
    return found


def get_step(name: str) -> Step:
    """The registered step ``name``; a clear error naming the installed ones otherwise."""
    steps = available_steps()
    step = steps.get(name)
    if step is None:
        known = ", ".join(n for n, s in steps.items() if isinstance(s, Step)) or "none"
        raise StepError(f"unknown step {name!r}; installed steps: {known} (`tomobluesky steps` lists them)")
    if isinstance(step, StepError):
        raise step
    return step
