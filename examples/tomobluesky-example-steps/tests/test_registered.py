"""The installed package's entry points, as tomobluesky sees them: the registry, `tomobluesky steps`
(in a fresh process) and `tomobluesky steps --check` on the package's pipeline file."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from tomobluesky.cli import main
from tomobluesky.steps import available_steps

PACKAGE = "tomobluesky-example-steps"
DECLARED = {  # name: (pattern, halo, entry point) as the functions declare them and pyproject.toml names them
    "remove_zingers": ("sinograms", 0, "tomobluesky_example_steps.zingers:remove_zingers"),
    "median3d": ("volume", 2, "tomobluesky_example_steps.filters:median3d"),
    "unsharp_mask": ("volume", 8, "tomobluesky_example_steps.filters:unsharp_mask"),
}


def test_the_registry_finds_the_three_steps_with_what_they_declare():
    found = available_steps()
    version = importlib.metadata.version(PACKAGE)
    for name, (pattern, halo, entry_point) in DECLARED.items():
        step = found[name]
        assert (step.pattern, step.halo, step.entry_point) == (pattern, halo, entry_point)
        assert (step.package, step.version) == (PACKAGE, version) and not step.whole
    assert list(found["unsharp_mask"].parameters) == ["sigma", "amount"]


def test_tomobluesky_steps_lists_them_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-m", "tomobluesky.cli", "steps", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # 1 would mean some installed step cannot be used
    listed = json.loads(done.stdout)
    for name, (pattern, halo, _) in DECLARED.items():
        assert (listed[name]["pattern"], listed[name]["halo"], listed[name]["package"]) == (pattern, halo, PACKAGE)
    assert listed["remove_zingers"]["parameters"] == ["threshold=6.0", "size=3"]
    assert listed["median3d"]["doc"].startswith("3-D median filter")


def test_the_packages_pipeline_file_checks(capsys):
    assert main(["steps", "--check", str(Path(__file__).parents[1] / "pipeline.yml"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in record] == ["normalize", "minus_log", "remove_zingers", "reconstruct", "median3d"]
    assert record[2] == {"step": "remove_zingers", "params": {"threshold": 6.0}, "package": PACKAGE,
                         "version": importlib.metadata.version(PACKAGE),
                         "entry_point": DECLARED["remove_zingers"][2]}


def test_the_installed_tomobluesky_is_one_this_package_declares_it_works_with():
    """The plugin interface changes only with tomobluesky's version (docs/plugins.md): when the version
    leaves the declared range, check the interface and this package, then move the range."""
    required = [Requirement(r) for r in importlib.metadata.requires(PACKAGE)]
    tomobluesky, = [r for r in required if r.name == "tomobluesky"]
    installed = importlib.metadata.version("tomobluesky")
    assert tomobluesky.specifier.contains(installed), f"tomobluesky {installed} is outside {tomobluesky.specifier}"
