"""What a user sees when a command line is wrong, for every subcommand.

The contract (tomobluesky/cli.py): a command line argparse cannot accept — a missing or unknown
argument, a choice or number it refuses, a key typed on the command line — exits with 2 and one line,
``<prog>: error: <what is wrong> (see <prog> --help)``. A problem found once the command runs (a file
that is missing or is not what it should be, options that contradict each other, a server that does not
answer) exits with 1 and one line, ``tomobluesky <command>: error: <what is wrong>``; ``-v`` shows the
traceback instead. Either way nothing is started or created first.

tests/unit/test_cli_inputs.py covers the numeric bounds of demo and reconstruct and bad settings;
this file covers the rest. All run ``main(argv)`` in-process except two real processes at the end.
"""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import uvicorn

from tomobluesky import cli, workers
from tomobluesky.catalog import TiledServer
from tomobluesky.pipeline import FrameReadError

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef" * 4  # well-formed, so a refusal is about where it is given, not what it is
UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once


@pytest.fixture(autouse=True)
def _no_key_and_no_server(monkeypatch):
    """No key from the environment; and a command that gets as far as starting a Tiled server or the
    viewer's web server fails here at once (with one line and exit 1, as any error) instead of serving."""
    monkeypatch.delenv("TOMOBLUESKY_TILED_API_KEY", raising=False)

    def started(*args, **kwargs):
        raise RuntimeError("a server was started")

    monkeypatch.setattr(TiledServer, "start", started)
    monkeypatch.setattr(uvicorn, "run", started)


def _run(capsys, argv, module=cli):
    """(exit code, stderr lines, stdout) of ``module.main(argv)``, whether it returns or exits."""
    try:
        code = module.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip().splitlines(), captured.out


def _usage_error(capsys, argv, prog):
    code, lines, out = _run(capsys, argv)
    assert code == 2, lines
    assert len(lines) == 1, lines
    line, = lines
    assert line.startswith(f"{prog}: error: ") and line.endswith(f"(see {prog} --help)")
    assert out == ""
    return line


# --- refused by the parser: exit 2 ----------------------------------------------------------------------

@pytest.mark.parametrize("argv, prog, words", [
    ([], "tomobluesky", "the following arguments are required: COMMAND"),
    (["-v"], "tomobluesky", "the following arguments are required: COMMAND"),
    (["frobnicate"], "tomobluesky", "invalid choice: 'frobnicate'"),
    (["export"], "tomobluesky export", "the following arguments are required: scan_uid, output"),
    (["export", "1f2e"], "tomobluesky export", "the following arguments are required: output"),
    (["reconstruct"], "tomobluesky reconstruct", "the following arguments are required: file, output"),
    (["reconstruct", "scan.h5"], "tomobluesky reconstruct", "the following arguments are required: output"),
    (["kafka"], "tomobluesky kafka", "the following arguments are required: ACTION"),
    (["kafka", "launch"], "tomobluesky kafka", "invalid choice: 'launch'"),
])
def test_a_missing_or_unknown_command_or_argument(capsys, argv, prog, words):
    assert words in _usage_error(capsys, argv, prog)


@pytest.mark.parametrize("argv", [
    ["demo", "--bogus"], ["serve", "--bogus", "3"], ["ls", "--bogus"], ["export", "uid", "out", "--bogus"],
    ["view", "--bogus"], ["reconstruct", "a.h5", "b.zarr", "--bogus"], ["replay", "--bogus"],
    ["kafka", "status", "--bogus"], ["ls", "extra"],
])
def test_an_unknown_option_is_named(capsys, argv):
    line = _usage_error(capsys, argv, "tomobluesky")
    assert "unrecognized arguments: " + " ".join(argv[argv.index("--bogus") if "--bogus" in argv else -1:]) in line


@pytest.mark.parametrize("argv, words", [
    (["demo", "--source", "camera"], "argument --source: invalid choice: 'camera' (choose from 'tooth', 'phantom')"),
    (["export", "uid", "out", "--format", "tif"], "argument --format: invalid choice: 'tif'"),
    (["ls", "--status", "done"], "argument --status: invalid choice: 'done'"),
    (["ls", "--scan-id", "12b"], "argument --scan-id: invalid int value: '12b'"),
    (["serve", "--port", "http"], "argument --port: 'http' is not an integer"),
    (["view", "--port", "0"], "argument --port: 0 is outside the allowed range 1..65535"),
    (["view", "--port", "80800"], "argument --port: 80800 is outside the allowed range 1..65535"),
    (["view", "--stream-limit", "0"], "argument --stream-limit: 0 is outside the allowed range > 0"),
    (["view", "--stream-limit", "-5"], "argument --stream-limit: -5 is outside the allowed range > 0"),
    (["view", "--stream-limit", "ten"], "argument --stream-limit: 'ten' is not a number"),
    (["reconstruct", "a.h5", "b.zarr", "--center", "mid"], "argument --center: 'mid' is not a number"),
    (["reconstruct", "a.h5", "b.zarr", "--memory-budget", "4GB"], "argument --memory-budget: '4GB' is not a number"),
    (["kafka", "start", "--port", "nine"], "argument --port: 'nine' is not an integer"),
    (["kafka", "start", "--port", "70000"], "argument --port: 70000 is outside the allowed range 1..65535"),
    (["serve", "--port", "70000"], "argument --port: 70000 is outside the allowed range 1..65535"),
    (["serve", "--port", "0"], "argument --port: 0 is outside the allowed range 1..65535"),
    (["serve", "--nice", "20"], "argument --nice: 20 is outside the allowed range 0..19"),
])
def test_a_refused_choice_or_number_names_the_option_and_the_value(capsys, argv, words):
    prog = "tomobluesky kafka start" if argv[0] == "kafka" else f"tomobluesky {argv[0]}"
    assert words in _usage_error(capsys, argv, prog)


@pytest.mark.parametrize("argv, hint", [
    (["demo"], "the demo uses the keys kept in DATA_DIR/keys/"), (["serve"], "give --writer-key-file PATH"),
    (["ls"], "give --api-key-file PATH"), (["export", "uid", "out"], "give --api-key-file PATH"),
    (["replay"], "give --api-key-file PATH"), (["view"], "with --public give --api-key-file FILE"),
])
def test_a_key_on_the_command_line_is_refused_without_repeating_it(capsys, tmp_path, argv, hint):
    data_dir = tmp_path / "catalog"
    line = _usage_error(capsys, [*argv, "--data-dir", str(data_dir), "--api-key", KEY], f"tomobluesky {argv[0]}")
    assert "--api-key is not accepted: a key on the command line is visible to every local user" in line
    assert KEY not in line
    assert hint in line  # what to do instead
    assert not data_dir.exists()


def test_a_key_option_is_not_taken_for_an_abbreviation_of_the_key_file_option(capsys):
    # argparse would read `--api-key F` as `--api-key-file F`, and `--api-key-f F` likewise
    _usage_error(capsys, ["ls", "--api-key", "/tmp/key"], "tomobluesky ls")
    parsed = cli.build_parser().parse_args(["ls", "--api-key-file", "/tmp/key"])
    assert parsed.api_key_file == "/tmp/key"


# --- refused when the command runs: exit 1 ----------------------------------------------------------------

def _runtime_error(capsys, argv, command):
    code, lines, out = _run(capsys, argv)
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tomobluesky {command}: error: ")
    assert out == ""
    return lines[0]


def test_reconstruct_a_missing_file(capsys, tmp_path):
    output = tmp_path / "volume.zarr"
    line = _runtime_error(capsys, ["reconstruct", str(tmp_path / "scan.h5"), str(output)], "reconstruct")
    assert line.endswith(f"Data Exchange file not found: {tmp_path / 'scan.h5'}")
    assert not output.exists()


def test_reconstruct_a_file_that_is_not_hdf5_or_not_a_scan(capsys, tmp_path):
    output = tmp_path / "volume.zarr"
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5\n")
    line = _runtime_error(capsys, ["reconstruct", str(text), str(output)], "reconstruct")
    assert f"{text} is not an HDF5 file" in line
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:  # projections and angles, no flats or darks
        f["/exchange/data"] = np.zeros((3, 4, 5), np.float32)
        f["/exchange/theta"] = [0.0, 60.0, 120.0]
    line = _runtime_error(capsys, ["reconstruct", str(partial), str(output)], "reconstruct")
    assert line.endswith(f"{partial} is not a Data Exchange scan: missing '/exchange/data_white'")
    assert not output.exists()


def test_demo_with_a_missing_tooth_file_starts_nothing(capsys, tmp_path):
    data_dir = tmp_path / "catalog"
    line = _runtime_error(capsys, ["demo", "--tooth-file", str(tmp_path / "tooth.h5"), "--data-dir", str(data_dir)],
                          "demo")
    assert line.endswith(f"Data Exchange file not found: {tmp_path / 'tooth.h5'}")
    assert not data_dir.exists()  # no Tiled server was started


@pytest.mark.parametrize("option", ["--writer-key-file", "--reader-key-file"])
def test_serve_with_a_missing_or_weak_key_file_starts_nothing(capsys, tmp_path, option):
    data_dir = tmp_path / "catalog"
    missing = tmp_path / "missing.key"
    line = _runtime_error(capsys, ["serve", "--data-dir", str(data_dir), option, str(missing)], "serve")
    assert line.endswith(f"cannot read the Tiled API key file {missing}: No such file or directory")
    weak = tmp_path / "weak.key"
    weak.write_text("secret\n")
    line = _runtime_error(capsys, ["serve", "--data-dir", str(data_dir), option, str(weak)], "serve")
    assert f"refusing the key in {weak}: a Tiled API key must be an even number of at least 32" in line
    assert not data_dir.exists()


@pytest.mark.parametrize("command", ["ls", "export", "replay"])
def test_client_commands_check_the_key_before_asking_the_server(capsys, monkeypatch, tmp_path, command):
    command = [command, "uid", str(tmp_path / "out")] if command == "export" else [command]
    common = ["--uri", UNREACHABLE, "--data-dir", str(tmp_path / "catalog")]
    missing = tmp_path / "missing.key"
    line = _runtime_error(capsys, [*command, *common, "--api-key-file", str(missing)], command[0])
    assert line.endswith(f"cannot read the Tiled API key file {missing}: No such file or directory")
    monkeypatch.setenv("TOMOBLUESKY_TILED_API_KEY", "hunter2")
    line = _runtime_error(capsys, [*command, *common], command[0])
    assert "refusing $TOMOBLUESKY_TILED_API_KEY: a Tiled API key must be" in line
    assert "hunter2" not in line
    assert not (tmp_path / "catalog").exists() and not (tmp_path / "out").exists()


def test_client_commands_against_a_server_that_does_not_answer(capsys, tmp_path):
    line = _runtime_error(capsys, ["ls", "--uri", UNREACHABLE, "--data-dir", str(tmp_path)], "ls")
    assert line.endswith(f"error: cannot reach {UNREACHABLE} ([Errno 111] Connection refused)")


def test_view_refuses_a_key_file_without_public_and_an_empty_one(capsys, tmp_path):
    key_file = tmp_path / "reader.key"
    key_file.write_text(KEY)
    line = _runtime_error(capsys, ["view", "--api-key-file", str(key_file)], "view")
    assert line.endswith("--api-key-file is for --public: otherwise the viewer holds no key and each reader "
                         "logs in with their own")
    key_file.write_text("\n")
    line = _runtime_error(capsys, ["view", "--public", "--api-key-file", str(key_file)], "view")
    assert line.endswith(f"{key_file} holds no key")
    line = _runtime_error(capsys, ["view", "--public", "--api-key-file", str(tmp_path / "none.key")], "view")
    assert str(tmp_path / "none.key") in line


def test_verbose_shows_the_traceback_instead(tmp_path):
    with pytest.raises(FrameReadError, match="Data Exchange file not found"):
        cli.main(["-v", "reconstruct", str(tmp_path / "scan.h5"), str(tmp_path / "v.zarr")])


# --- the worker's own command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    ([], "the following arguments are required: kind"),
    (["catalogue", "--tiled-uri", UNREACHABLE], "argument kind: invalid choice: 'catalogue'"),
    (["catalog"], "no Tiled server: give --tiled-uri URI or set TOMOBLUESKY_TILED_URI"),
    (["catalog", "--tiled-uri", UNREACHABLE], "no Tiled write key: set TOMOBLUESKY_TILED_API_KEY or give "
                                              "--api-key-file PATH"),
    (["reconstruction", "--tiled-uri", UNREACHABLE, "--api-key", KEY], "--api-key is not accepted"),
    (["catalog", "--tiled-uri", UNREACHABLE, "--until-idle", "soon"], "argument --until-idle: invalid float value"),
])
def test_the_worker_refuses_before_connecting(capsys, argv, words):
    code, lines, out = _run(capsys, argv, module=workers)
    assert code == 2 and out == ""
    assert lines[-1].startswith("tomobluesky-worker: error: ") and words in lines[-1]
    assert KEY not in "\n".join(lines)


def test_the_worker_refuses_a_missing_key_file(capsys, tmp_path):
    code, lines, _ = _run(capsys, ["catalog", "--tiled-uri", UNREACHABLE, "--api-key-file", str(tmp_path / "k")],
                          module=workers)
    assert code == 2 and lines[-1].endswith(f"cannot read the Tiled API key file {tmp_path / 'k'}: "
                                            "No such file or directory")


# --- two real processes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, code, line", [
    (["ls", "--status", "done"], 2, "tomobluesky ls: error: argument --status: invalid choice: 'done' (choose from "
                                    "'complete', 'writing', 'failed') (see tomobluesky ls --help)"),
    (["reconstruct", "/nonexistent/scan.h5", "/nonexistent/out.zarr"], 1,
     "tomobluesky reconstruct: error: Data Exchange file not found: /nonexistent/scan.h5"),
])
def test_a_real_process_prints_one_line_and_the_exit_code(argv, code, line):
    done = subprocess.run([sys.executable, "-m", "tomobluesky.cli", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code
    assert done.stderr.strip().splitlines() == [line] and done.stdout == ""
