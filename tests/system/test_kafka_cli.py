"""`tomobluesky kafka start|status|stop`: the broker outlives the command that started it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.system


def kafka(*args, state):
    proc = subprocess.run([sys.executable, "-m", "tomobluesky.cli_kafka", *args, "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_start_status_stop(tmp_path):
    from tomobluesky.services import broker_is_ready

    state = tmp_path / "kafka"
    assert kafka("status", state=state)[0] == 3
    rc, out, err = kafka("start", "--json", state=state)
    assert rc == 0, err
    started = json.loads(out)
    try:
        assert broker_is_ready(started["bootstrap"])  # still running after the command returned
        rc, out, _ = kafka("status", "--json", state=state)
        assert rc == 0 and json.loads(out)["pid"] == started["pid"]
        rc, out, _ = kafka("start", "--json", state=state)
        assert json.loads(out)["already_running"] is True
    finally:
        rc, out, _ = kafka("stop", "--json", state=state)
    assert rc == 0 and json.loads(out)["stopped"] is True
    assert kafka("status", state=state)[0] == 3
    assert not broker_is_ready(started["bootstrap"], timeout=0.5)
