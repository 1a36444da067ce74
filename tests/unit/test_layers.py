"""The layer contracts of pyproject.toml's [tool.importlinter], checked with import-linter."""

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tomobluesky

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def lint_imports(config: Path) -> tuple[int, str]:
    """import-linter's exit status and report for ``config``. In a child process: import-linter configures logging
    with dictConfig, which would disable the loggers of every module this test session imported."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    done = subprocess.run([sys.executable, "-c", code, str(config)], cwd=ROOT, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def contracts() -> dict:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def test_the_contracts_are_kept():
    status, report = lint_imports(PYPROJECT)
    assert status == 0, report
    assert "Contracts: 2 kept, 0 broken." in report


def test_recon_contract_names_every_other_module():
    """A module added beside recon must join the list, or recon could import it unnoticed."""
    modules = {f"tomobluesky.{m.name}" for m in pkgutil.iter_modules(tomobluesky.__path__)}
    forbidden = set(contracts()["recon imports nothing of the project"]["forbidden_modules"])
    missing = modules - {"tomobluesky.recon"} - forbidden
    assert not missing, f"add {sorted(missing)} to the recon contract's forbidden_modules in pyproject.toml"
    assert forbidden <= modules  # import-linter refuses a module that does not exist


def write_config(tmp_path, source_modules, forbidden_modules) -> Path:
    path = tmp_path / "contracts.toml"
    listing = ", ".join(f'"{m}"' for m in forbidden_modules)
    path.write_text(f"""[tool.importlinter]
root_package = "tomobluesky"
include_external_packages = true

[[tool.importlinter.contracts]]
name = "planted"
type = "forbidden"
source_modules = ["{source_modules}"]
forbidden_modules = [{listing}]
""")
    return path


@pytest.mark.parametrize("name, violator", [
    ("live does not import Kafka", "tomobluesky.workers"),        # builds the Kafka publisher and consumer
    ("recon imports nothing of the project", "tomobluesky.pipeline"),  # uses recon, store, keys, ...
])
def test_the_contracts_catch_a_module_that_breaks_them(tmp_path, name, violator):
    """The same forbidden lists, applied to a module known to import those things, are broken:
    the contracts above are kept because the layers hold, not because nothing is checked."""
    config = write_config(tmp_path, violator, contracts()[name]["forbidden_modules"])
    status, report = lint_imports(config)
    assert status == 1 and "planted BROKEN" in report and "Contracts: 0 kept, 1 broken." in report, report
