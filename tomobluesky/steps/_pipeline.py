"""A pipeline is data: a list of ``{"step": name, "params": {...}}`` entries.

It comes from a scan's start document (``md={"pipeline": [...]}``) or a YAML
file, and is checked before the scan starts (by the plan) and again by the
worker: unknown steps, unknown or ill-typed parameters and steps out of
order are refused with one line naming the entry. The pipeline as run is
recorded in the volume's metadata (names, parameters, package versions).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ._registry import PATTERNS, Step, StepError, get_step

#: the chain tomobluesky runs when a scan names none (the built-in steps of ``tomobluesky.steps``)
DEFAULT_PIPELINE = ({"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"})


class PipelineError(StepError):
    """A pipeline that cannot run as written."""


class StepFailed(RuntimeError):
    """A step raised while running: the scan is marked failed with the step's name and reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"step {name!r} failed: {reason}")
        self.step, self.reason = name, reason


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    params: dict[str, typing.Any] = {}


@dataclass(frozen=True)
class Stage:
    """One entry of a checked pipeline: the step and its validated parameters."""

    step: Step
    params: dict = field(default_factory=dict)

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(getattr(self.step.function, "needs", ()))

    @property
    def produces(self) -> str:
        return getattr(self.step.function, "produces", self.step.pattern)

    def __call__(self, array, context: dict | None = None):
        extra = {name: (context or {})[name] for name in self.needs}
        try:
            return self.step.function(array, **self.params, **extra)
        except Exception as err:
            raise StepFailed(self.step.name, f"{type(err).__name__}: {err}") from err


def _check_params(step: Step, params: dict, where: str) -> dict:
    allowed = {n: p for n, p in step.parameters.items() if n not in getattr(step.function, "needs", ())}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise PipelineError(f"{where}: step {step.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"it takes {', '.join(allowed) or 'none'}")
    missing = [n for n, p in allowed.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise PipelineError(f"{where}: step {step.name!r} needs {', '.join(map(repr, missing))}")
    try:
        # with extras: the constraints of Annotated[float, Field(gt=0)] are part of the check
        hints = typing.get_type_hints(step.function, include_extras=True)
    except Exception:  # annotations that do not resolve: take the values as given
        hints = {}
    checked = {}
    for name, value in params.items():
        try:
            checked[name] = TypeAdapter(hints[name]).validate_python(value) if name in hints else value
        except ValidationError as err:
            problem = err.errors()[0]["msg"]
            raise PipelineError(f"{where}: step {step.name!r} parameter {name!r}={value!r}: {problem}") from None
    return checked


class Pipeline:
    """A checked pipeline: its stages in order, grouped by the layout they work on."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages

    @classmethod
    def from_spec(cls, spec=None) -> "Pipeline":
        """Check ``spec`` (a list of entries; None: the default pipeline) and resolve its steps."""
        spec = list(DEFAULT_PIPELINE if spec is None else spec)
        if not spec:
            raise PipelineError("the pipeline is empty; it needs at least a step that produces the volume")
        stages = []
        for i, raw in enumerate(spec):
            where = f"pipeline entry {i + 1}"
            try:
                entry = _Entry.model_validate(raw)
            except ValidationError as err:
                problem = err.errors()[0]
                raise PipelineError(f"{where} {raw!r}: {problem['msg']} ({'.'.join(map(str, problem['loc']))}); "
                                    "an entry is {'step': name, 'params': {...}}") from None
            try:
                step = get_step(entry.step)
            except StepError as err:
                raise PipelineError(f"{where}: {err}") from None
            stages.append(Stage(step, _check_params(step, entry.params, where)))
        _check_order(stages)
        return cls(stages)

    @classmethod
    def from_yaml(cls, path) -> "Pipeline":
        return cls.from_spec(cls.spec_from_yaml(path))

    @staticmethod
    def spec_from_yaml(path) -> list:
        """The list of entries in a pipeline file (a list, or ``pipeline:`` with one), checked."""
        import yaml

        try:
            spec = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise PipelineError(f"cannot read the pipeline file {path}: {err}") from None
        if isinstance(spec, dict) and "pipeline" in spec:
            spec = spec["pipeline"]
        if not isinstance(spec, list):
            raise PipelineError(f"{path}: a pipeline file holds a list of steps (or `pipeline:` with one)")
        Pipeline.from_spec(spec)
        return spec

    def stage(self, pattern: str) -> list[Stage]:
        """The stages that work on ``pattern`` slabs, in order (the volume-producing step excluded)."""
        return [s for s in self.stages if s.step.pattern == pattern and s.produces == pattern]

    @property
    def producer(self) -> Stage:
        """The step that turns sinograms into the volume."""
        return next(s for s in self.stages if s.produces == "volume" and s.step.pattern != "volume")

    def halo(self, pattern: str) -> int:
        """Rows (or slices) a slab needs on each side for every step of ``pattern`` to be exact."""
        return sum(s.step.halo for s in self.stage(pattern))

    def names(self) -> list[str]:
        return [s.step.name for s in self.stages]

    def record(self) -> list[dict]:
        """The pipeline as run, for the volume's metadata."""
        return [{"step": s.step.name, "params": _plain(s.params), "package": s.step.package,
                 "version": s.step.version, "entry_point": s.step.entry_point} for s in self.stages]

    def run(self, pattern: str, array, context: dict | None = None):
        """Apply the ``pattern`` stages to one slab, in order."""
        for stage in self.stage(pattern):
            array = stage(array, context)
        return array


def _check_order(stages: list[Stage]):
    """Layouts only move forward: projections → sinograms → volume, through exactly one volume-producing step."""
    producers = [s for s in stages if s.produces == "volume" and s.step.pattern != "volume"]
    if len(producers) != 1:
        found = ", ".join(s.step.name for s in producers) or "none"
        raise PipelineError(f"a pipeline needs exactly one step that turns sinograms into a volume "
                            f"(such as 'reconstruct'); found {found}")
    rank = {p: i for i, p in enumerate(PATTERNS)}
    current = 0
    for i, stage in enumerate(stages):
        if rank[stage.step.pattern] < current:
            raise PipelineError(f"pipeline entry {i + 1}: step {stage.step.name!r} works on "
                                f"{stage.step.pattern} but comes after the data became {PATTERNS[current]}")
        current = rank[stage.produces]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
