"""What docs/plugins.md promises a plugin author: constraints in parameter annotations are checked before a
scan, and the doc's own examples (a step returning a dict, its entry points, a pipeline file) work as shown."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tomobluesky.steps import Pipeline, PipelineError, StepFailed, run_volume_steps
from tomobluesky.store import MultiscaleWriter, open_multiscale

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


DOC = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def _block(first_line: str) -> str:
    """The fenced block of docs/plugins.md that starts with ``first_line``."""
    for block in re.findall(r"```\w*\n(.*?)```", DOC.read_text(), flags=re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"docs/plugins.md has no block starting {first_line!r}")


@pytest.fixture
def doc_plugin(install_step_plugin, tmp_path):
    """The doc's mypkg, installed from the doc's own module and entry points."""
    toml = _block("# mypkg's pyproject.toml")
    assert '[project.entry-points."tomobluesky.steps"]' in toml
    entry_points = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', toml, flags=re.M))
    assert entry_points == {"window": "mypkg.steps:window"}
    install_step_plugin("mypkg", "0.1.0", "", entry_points)
    (tmp_path / "site" / "mypkg" / "steps.py").write_text(_block("# mypkg/steps.py"))


def test_the_docs_step_returns_a_dict_stored_under_its_keys(doc_plugin, tmp_path):
    volume = np.linspace(-1, 1, 6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8)
    MultiscaleWriter(tmp_path / "volume", volume.shape, min_size=8).write_slab(0, volume)
    pipeline = Pipeline.from_spec([{"step": "reconstruct"},
                                   {"step": "window", "params": {"low": "-0.5", "high": 0.25}}])
    out = run_volume_steps(pipeline, tmp_path / "volume", tmp_path / "processed", slab=2)
    assert sorted(out["arrays"]) == ["window/outside", "window/values"]
    values = open_multiscale(out["arrays"]["window/values"])[0][...]
    outside = open_multiscale(out["arrays"]["window/outside"])[0][...]
    np.testing.assert_array_equal(values, np.clip(volume, -0.5, 0.25))
    assert outside.dtype == np.uint8
    np.testing.assert_array_equal(outside, (volume < -0.5) | (volume > 0.25))
    bad = Pipeline.from_spec([{"step": "reconstruct"}, {"step": "window", "params": {"low": 1, "high": 0}}])
    with pytest.raises(StepFailed, match=r"step 'window' failed: ValueError: low \(1.0\) must be below high"):
        run_volume_steps(bad, tmp_path / "volume", tmp_path / "bad", slab=2)


def test_the_docs_pipeline_file_checks(doc_plugin, tmp_path, capsys):
    """With the doc's window and the example package's steps (installed by `make install-test`)."""
    from tomobluesky.cli import main

    path = tmp_path / "pipeline.yml"
    path.write_text(_block("# pipeline.yml"))
    assert main(["steps", "--check", str(path), "--json"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in record] == ["normalize", "minus_log", "remove_zingers", "reconstruct", "median3d",
                                           "window"]
    assert record[2]["package"] == "tomobluesky-example-steps" and record[5]["package"] == "mypkg"


def test_the_docs_per_scan_pipeline_checks(doc_plugin):
    text = _block("RE(tomo_scan(camera, rotation, shutter, sample, num_projections=1500, md={\"pipeline\": [")
    md = ast.literal_eval(text[text.index("md=") + 3:text.rindex("))")])
    assert Pipeline.from_spec(md["pipeline"]).names() == ["normalize", "minus_log", "remove_zingers", "reconstruct",
                                                          "window"]
