"""One settings model for every entry point: a YAML file ($TOMOBLUESKY_CONFIG) under the environment,
`tomobluesky config` to see it, `tomobluesky worker` reading it."""

import pytest
import yaml

from tomobluesky.cli import main
from tomobluesky.cli_settings import effective
from tomobluesky.config import Settings


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    for name in ("TOMOBLUESKY_RECON__ALGORITHM", "TOMOBLUESKY_BEAMLINE", "TOMOBLUESKY_TILED_URI",
                 "TOMOBLUESKY_TILED_API_KEY", "TOMOBLUESKY_MEMORY_BUDGET_GB"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "tomobluesky.yml"
    monkeypatch.setenv("TOMOBLUESKY_CONFIG", str(path))
    return path


def test_the_file_sets_nested_sections_and_the_environment_wins(config_file, monkeypatch, tmp_path):
    config_file.write_text(f"beamline: fxi\ndata_dir: {tmp_path / 'data'}\nmemory_budget_gb: 1.5\n"
                           "recon:\n  algorithm: fbp\n  ring_removal: true\n")
    settings = Settings()
    assert (settings.beamline, settings.memory_budget_gb) == ("fxi", 1.5)
    assert (settings.recon.algorithm, settings.recon.ring_removal) == ("fbp", True)
    assert settings.volumes == tmp_path / "data" / "volumes"
    monkeypatch.setenv("TOMOBLUESKY_RECON__ALGORITHM", "nufft")
    monkeypatch.setenv("TOMOBLUESKY_BEAMLINE", "hxn")
    settings = Settings()
    assert (settings.beamline, settings.recon.algorithm, settings.recon.ring_removal) == ("hxn", "nufft", True)
    assert Settings(beamline="cli").beamline == "cli"  # arguments (the command line's) over both


def test_a_misspelt_key_or_a_missing_file_is_one_line_naming_it(config_file, capsys):
    config_file.write_text("beamlin: fxi\nrecon:\n  algoritm: fbp\n")
    assert main(["ls"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"tomobluesky: error: {config_file}: unknown setting 'beamlin'" in err[0] + err[-1]
    assert any("unknown setting 'recon.algoritm'" in line for line in err) and len(err) == 2
    config_file.unlink()
    assert main(["ls"]) == 2
    assert capsys.readouterr().err.strip() == f"tomobluesky: error: $TOMOBLUESKY_CONFIG names {config_file}, " \
                                               "which is not a file"


def test_config_prints_a_file_that_reads_back_the_same_with_the_key_masked(config_file, monkeypatch, capsys,
                                                                          tmp_path):
    config_file.write_text(f"data_dir: {tmp_path}\nrecon:\n  filter_name: hann\n")
    monkeypatch.setenv("TOMOBLUESKY_TILED_API_KEY", "a" * 40)
    assert main(["config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["tiled_api_key"] == "********" and "a" * 40 not in str(printed)
    assert printed["recon"]["filter_name"] == "hann" and printed["data_dir"] == str(tmp_path)
    config_file.write_text(yaml.safe_dump(printed))
    assert Settings().tiled_api_key == "a" * 40  # the mask read back is no key: the variable's stays
    monkeypatch.delenv("TOMOBLUESKY_TILED_API_KEY")
    assert Settings().tiled_api_key is None
    assert effective(Settings()) == {**printed, "tiled_api_key": None}


def test_worker_takes_its_tiled_server_from_the_settings(config_file, capsys, tmp_path):
    config_file.write_text(f"data_dir: {tmp_path}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "catalog", "--api-key-file", str(tmp_path / "nope")])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["worker"])
    assert "which worker: reconstruction or catalog" in capsys.readouterr().err
    key = tmp_path / "writer"
    key.write_text("b" * 40)
    key.chmod(0o600)
    with pytest.raises(SystemExit):
        main(["worker", "catalog", "--api-key-file", str(key)])
    assert "no Tiled server: give --tiled-uri URI or set TOMOBLUESKY_TILED_URI" in capsys.readouterr().err
