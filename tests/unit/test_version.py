"""`tomobluesky --version` prints the installed distribution's version, which is tomobluesky.__version__."""

import importlib.metadata

import pytest

import tomobluesky
from tomobluesky.cli import main


def test_version_flag_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"tomobluesky {tomobluesky.__version__}"
    # pyproject takes its version from tomobluesky.__version__: the metadata pip installed agrees
    assert importlib.metadata.version("tomobluesky") == tomobluesky.__version__
