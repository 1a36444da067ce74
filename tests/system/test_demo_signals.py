"""SIGTERM ends ``tomobluesky demo`` cleanly, with a real process: its Tiled server stops with it
(never left running, reparented to init) and the run it was scanning ends with a stop document."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.system.waiting import wait_for

pytestmark = pytest.mark.system


def _children(pid: int) -> list[int]:
    """Ids of the processes whose parent is ``pid`` (from /proc: no psutil here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_demo(data_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "tomobluesky.cli", "demo", "--source", "phantom",
                             "--phantom-size", "32", "--num-projections", "50000", "--data-dir", str(data_dir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _tiled_child(proc):
    tiled = [pid for pid in _children(proc.pid) if b"tiled" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return tiled[0] if tiled else None


def _terminate_and_check(proc, tiled_pid):
    """SIGTERM the demo; it must exit 130 without a traceback, its Tiled server gone with it."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        orphaned = _alive(tiled_pid)
        if orphaned:  # leave nothing behind, even when the test fails
            os.kill(tiled_pid, signal.SIGKILL)
    assert not orphaned, "the Tiled server outlived the demo"
    assert proc.returncode == 130, out
    assert "Traceback" not in out, out
    return out


@pytest.mark.parametrize("extra", [(), ("--fly",)], ids=["step", "fly"])
def test_sigterm_during_the_scan_stops_tiled_and_ends_the_run(tmp_path, extra):
    data_dir = tmp_path / "catalog"
    proc = _start_demo(data_dir, *extra)
    try:
        wait_for(lambda: _tiled_child(proc), 60, "Tiled child", proc=proc)
        tiled_pid = _tiled_child(proc)
        wait_for(lambda: any((data_dir / "detector").glob("*.h5")), 120, "detector file (scan started)", proc=proc)
        time.sleep(1.0)  # well inside the scan: 50,000 projections take minutes
        out = _terminate_and_check(proc, tiled_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "exit_status as 'abort'" in out  # the run was ended by bluesky, with a stop document


def test_sigterm_while_tiled_starts_stops_it_too(tmp_path):
    proc = _start_demo(tmp_path / "catalog")
    try:
        wait_for(lambda: _tiled_child(proc), 60, "Tiled child", proc=proc)
        tiled_pid = _tiled_child(proc)
        _terminate_and_check(proc, tiled_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
