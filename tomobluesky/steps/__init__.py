"""User-defined processing steps (plugins) and pipelines as data.

A step is a plain function registered under the entry-point group
``tomobluesky.steps``; a pipeline is a list of ``{"step": name, "params":
{...}}`` entries. tomobluesky's own chain (normalize → minus_log →
reconstruct, with ``rings`` and ``paganin`` available) is registered the
same way, and ``segment`` is the first volume step. See docs/steps.md.
"""

from ._pipeline import DEFAULT_PIPELINE, Pipeline, PipelineError, Stage, StepFailed
from ._registry import GROUP, PATTERNS, Step, StepError, available_steps, get_step, refresh
from ._run import run_volume_steps

__all__ = ["DEFAULT_PIPELINE", "GROUP", "PATTERNS", "Pipeline", "PipelineError", "Stage", "Step", "StepError",
           "StepFailed", "available_steps", "get_step", "refresh", "run_volume_steps"]
