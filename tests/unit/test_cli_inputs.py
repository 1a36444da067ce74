"""Bad command-line arguments and TOMOBLUESKY_* settings are refused in one line, before anything starts:
exit code 2, the option or variable named, no data directory made (so no Tiled server was started)."""

import subprocess
import sys

import pytest

from tomobluesky import cli, limits, workers
from tomobluesky.recon import ALGORITHMS


def _refused(capsys, argv):
    """Run the CLI in-process and return its stderr, checking it exited with 2 and wrote one line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("option, value, allowed", [
    ("--num-projections", "0", "2..100000"),
    ("--num-projections", "1", "2..100000"),
    ("--num-projections", "-5", "2..100000"),
    ("--num-projections", "2000000", "2..100000"),
    ("--num-projections", "12.5", "not an integer"),
    ("--phantom-size", "0", "16..4096"),
    ("--phantom-size", "-8", "16..4096"),
    ("--phantom-size", "100000", "16..4096"),
    ("--port", "0", "1..65535"),
    ("--port", "70000", "1..65535"),
    ("--memory-budget", "0", "> 0"),
    ("--memory-budget", "-1", "> 0"),
    ("--memory-budget", "nan", "> 0"),
    ("--memory-budget", "1e9", "machine's memory"),  # bytes where gigabytes were meant
    ("--algorithm", "bogus", "nufft"),
])
def test_demo_refuses_bad_arguments_before_starting_anything(capsys, tmp_path, option, value, allowed):
    data_dir = tmp_path / "catalog"
    err = _refused(capsys, ["demo", "--source", "phantom", "--data-dir", str(data_dir), option, value])
    assert err.startswith(f"tomobluesky demo: error: argument {option}: ")
    assert allowed in err
    assert not data_dir.exists()  # the Tiled server would have made it and its catalog.db


@pytest.mark.parametrize("option, value", [
    ("--memory-budget", "0"), ("--pixel-size", "0"), ("--pixel-size", "-2"), ("--pixel-size", "inf"),
    ("--center", "nan"), ("--center", "inf"), ("--center", "-3"), ("--algorithm", "sirt"),
])
def test_reconstruct_refuses_bad_arguments(capsys, tmp_path, option, value):
    output = tmp_path / "volume.zarr"
    err = _refused(capsys, ["reconstruct", str(tmp_path / "scan.h5"), str(output), option, value])
    assert f"argument {option}: " in err
    assert not output.exists()


def test_the_algorithms_offered_are_the_engines():
    for name in ALGORITHMS:
        assert limits.algorithm_name(name) == name
    parse = cli.build_parser().parse_args
    assert parse(["demo", "--algorithm", ALGORITHMS[-1]]).algorithm == ALGORITHMS[-1]


def test_good_bounds_pass():
    args = cli.build_parser().parse_args(["demo", "--num-projections", "2", "--phantom-size", "16", "--port", "65535",
                                          "--memory-budget", "0.5"])
    assert (args.num_projections, args.phantom_size, args.port, args.memory_budget) == (2, 16, 65535, 0.5)
    args = cli.build_parser().parse_args(["reconstruct", "a.h5", "b.zarr", "--center", "0", "--pixel-size", "0.65"])
    assert (args.center, args.pixel_size) == (0.0, 0.65)


@pytest.mark.parametrize("variable, value, words", [
    ("TOMOBLUESKY_MEMORY_BUDGET_GB", "-1", "> 0"),
    ("TOMOBLUESKY_MEMORY_BUDGET_GB", "abc", "valid number"),
    ("TOMOBLUESKY_MEMORY_BUDGET_GB", "2000000000", "machine's memory"),
    ("TOMOBLUESKY_RECON__ALGORITHM", "bogus", "unknown algorithm 'bogus'"),
    ("TOMOBLUESKY_RECON__BACKEND", "cuda", "unknown backend 'cuda'"),
    ("TOMOBLUESKY_RECON__PREVIEW_EVERY", "0", "greater than or equal to 1"),
])
def test_bad_settings_are_one_line_naming_the_variable(capsys, monkeypatch, tmp_path, variable, value, words):
    monkeypatch.setenv(variable, value)
    data_dir = tmp_path / "catalog"
    assert cli.main(["demo", "--source", "phantom", "--data-dir", str(data_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tomobluesky: error: {variable}={value!r}: ")
    assert words in lines[0]
    assert not data_dir.exists()


@pytest.mark.parametrize("option, value", [("--algorithm", "bogus"), ("--memory-budget", "0"),
                                           ("--memory-budget", "-4")])
def test_worker_refuses_bad_arguments(capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        workers.build_parser().parse_args(["reconstruction", "--tiled-uri", "http://x", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_real_process_gets_one_line_and_exit_code_2(tmp_path):
    data_dir = tmp_path / "catalog"
    done = subprocess.run([sys.executable, "-m", "tomobluesky.cli", "demo", "--source", "phantom", "--data-dir",
                           str(data_dir), "--num-projections", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tomobluesky demo: error: argument --num-projections: 0 is outside the allowed range 2..100000 "
        "(see tomobluesky demo --help)"]
    assert done.stdout == ""
    assert not data_dir.exists()
