"""What docs/plugins.md promises a plugin author: constraints in parameter annotations are checked before a
scan, and the doc's own examples (a step returning a dict, its entry points, a pipeline file) work as shown."""

import pytest

from tomobluesky.steps import Pipeline, PipelineError

CONSTRAINED = '''
from typing import Annotated

from pydantic import Field

def clip(volume, *, high: Annotated[float, Field(gt=0, le=10)] = 1.0):
    """Clip the volume at high."""
    return volume.clip(max=high)
'''


def test_constraints_in_annotated_parameters_are_checked(install_step_plugin):
    """The halo of a step may cover only the parameters its annotations allow: the constraints must hold
    (typing.get_type_hints drops Annotated's metadata unless asked to keep it)."""
    install_step_plugin("clipper", "1.0", CONSTRAINED, {"clip": "clipper:clip"})
    for value, problem in [(0, "greater than 0"), (11, "less than or equal to 10")]:
        with pytest.raises(PipelineError, match=f"step 'clip' parameter 'high'={value}: Input should be {problem}"):
            Pipeline.from_spec([{"step": "reconstruct"}, {"step": "clip", "params": {"high": value}}])
    pipeline = Pipeline.from_spec([{"step": "reconstruct"}, {"step": "clip", "params": {"high": "2.5"}}])
    assert pipeline.stage("volume")[0].params == {"high": 2.5}
