"""`tomobluesky stack`: the whole service set under supervisord, the catalogue in a real PostgreSQL.

One stack for the module (free ports, its own root): every service healthy; a reconstruction
worker killed with SIGKILL is restarted by supervisord and rejoins its consumer group; a scan
published through the stack's Kafka becomes a raw run and a volume in the PostgreSQL catalogue,
which answers the analysts' examples; `down` leaves no process and no port behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tomobluesky.services.stack import Stack, descendants
from tomobluesky.services.stack_config import StackSettings
from tomobluesky.services.supervisor import pid_alive

pytestmark = pytest.mark.system
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SERVICES = ["postgres", "kafka", "tiled", "dask-scheduler", "dask-worker", "reconstruction", "catalog", "viewer"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(check, timeout: float, what: str, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def stack():
    # not pytest's tmp_path: as root, PostgreSQL runs as `postgres`, which must walk down to its directory
    root = Path(tempfile.mkdtemp(prefix="tomobluesky-stack-", dir="/tmp"))
    root.chmod(0o711)
    settings = StackSettings(
        beamline=f"stack{uuid.uuid4().hex[:6]}",
        kafka={"port": 0, "controller_port": 0, "partitions": 2},
        tiled={"port": 0}, postgres={"port": _free_port()}, viewer={"port": 0},
        workers={"reconstruction": 2, "catalog": 1},
        dask={"workers": 1, "scheduler_port": 0, "dashboard_port": 0, "memory_limit": "1GB"},
        paths={"root": root / "stack"})
    s = Stack(settings)
    s.pids_seen = set()  # every service process the tests saw, for the final check
    try:
        s.up(timeout=420)  # generous: up took 4-5 min here with a load average of 15-20 on 2 cores
        yield s
    finally:
        if s.is_up():
            s.down()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _all_pids(stack) -> set[int]:
    pids = {p["pid"] for p in stack.supervisor.processes().values() if p["pid"]}
    return pids | {d for pid in pids for d in descendants(pid)}


def test_every_service_is_up_and_answers(stack):
    rows = {r.service: r for r in stack.status()}
    assert list(rows) == SERVICES
    unhealthy = {name: r.detail for name, r in rows.items() if not r.healthy}
    assert not unhealthy
    assert len(rows["reconstruction"].processes) == 2 and rows["reconstruction"].detail.startswith("2/2 in group")
    assert rows["dask-worker"].detail.startswith("1/1 workers")
    ports = stack.ports()
    assert rows["tiled"].address == f"http://127.0.0.1:{ports.tiled}"
    assert rows["postgres"].address.endswith(f".s.PGSQL.{stack.settings.postgres.port}")
    # one log directory, one log per process
    logs = {p.name for p in stack.paths.logs.iterdir()}
    assert {"supervisord.log", "postgres.log", "kafka.log", "tiled.log", "reconstruction-0.log",
            "reconstruction-1.log", "catalog.log", "viewer.log"} <= logs
    stack.pids_seen |= _all_pids(stack)


def test_no_key_on_any_command_line(stack):
    keys = [stack.catalog_layout.stored_key(k) for k in ("writer", "reader")]
    assert all(keys)
    conf = stack.supervisor.config_file
    assert conf.stat().st_mode & 0o777 == 0o600
    text = conf.read_text()
    assert not any(k in text for k in keys)
    assert f"--api-key-file {stack.catalog_layout.key_file}" in text  # the workers get the key's path
    for pid in _all_pids(stack):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        assert not any(k in cmdline or k in environ for k in keys), pid


def test_killed_worker_is_restarted_and_rejoins(stack):
    name = "reconstruction:reconstruction-1"
    before = stack.supervisor.processes()[name]["pid"]
    os.kill(before, signal.SIGKILL)

    def restarted():
        info = stack.supervisor.processes()[name]
        return info["statename"] == "RUNNING" and info["pid"] not in (0, before) and info["pid"]

    after = _until(restarted, 60, "supervisord restarting the killed worker")
    assert not pid_alive(before)
    rejoined = _until(lambda: {r.service: r for r in stack.status()}["reconstruction"].healthy, 90,
                      "the restarted worker rejoining the consumer group")
    assert rejoined
    stack.pids_seen |= {after, *_all_pids(stack)}


@pytest.fixture(scope="module")
def published_scan(stack):
    """A phantom scan through the stack's Kafka: the catalogue writer and a reconstruction worker
    put the raw run and the volume into the PostgreSQL catalogue."""
    from bluesky import RunEngine
    from tiled.client import from_uri

    from tomobluesky.devices import PhantomSource, make_sim_beamline
    from tomobluesky.plans import tomo_scan
    from tomobluesky.transport import KafkaConfig, KafkaPublisher

    ports = stack.ports()
    config = KafkaConfig(bootstrap=f"127.0.0.1:{ports.kafka}", beamline=stack.settings.beamline,
                         journal_dir=stack.root / "test-journal")
    source = PhantomSource(n_slices=4, n_columns=32, noise=False, sample_name="stack-bone")
    RE = RunEngine({})
    with KafkaPublisher(config) as publisher:
        RE.subscribe(publisher)
        uid, = RE(tomo_scan(*make_sim_beamline(source, stack.catalog_layout.detector), num_projections=30,
                            num_darks=1, num_flats=1))
        assert not publisher.flush(60)
    reader = from_uri(f"http://127.0.0.1:{ports.tiled}", api_key=stack.catalog_layout.stored_key("reader"))

    def volume_done():
        processed = reader["processed"]
        if uid not in processed:
            return None
        md = processed[uid].metadata
        assert md.get("status") != "failed", md.get("reason")
        return md.get("status") == "complete" and uid in reader["raw"] and reader["raw"][uid].metadata.get("stop")

    _until(volume_done, 180, "the scan's volume and raw run in the catalogue", step=0.5)
    return uid, reader


def _example(script, stack, **env):
    full = {**os.environ, "TILED_URI": f"http://127.0.0.1:{stack.ports().tiled}",
            "TILED_API_KEY": stack.catalog_layout.stored_key("reader"), **env}
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, env=full,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_catalogue_lives_in_postgres(stack, published_scan):
    uid, _ = published_scan
    db = stack.settings.postgres.database
    # the run's node is a row in PostgreSQL's `nodes` table, not in a SQLite file
    parents = stack.postgres.psql(f"SELECT p.key FROM nodes n JOIN nodes p ON n.parent = p.id "
                                  f"WHERE n.key = '{uid}' ORDER BY 1", database=db).split()
    assert {"raw", "processed"} <= set(parents)  # the raw run and its volume (live previews may be there too)
    assert set(parents) <= {"raw", "processed", "live"}
    assert not (stack.catalog_layout.catalog_db).exists()


def test_analyst_find_and_slice_on_postgres(stack, published_scan):
    uid, reader = published_scan
    out = _example("find_and_slice.py", stack, SAMPLE="stack-bone")
    assert "1 complete volume(s) of sample 'stack-bone'" in out
    assert uid in out and "30 projections" in out and "streams ['dark', 'flat', 'primary']" in out
    full = reader["processed"][uid]["0"]
    middle = full.shape[0] // 2
    mean = re.search(rf"slice {middle} mean (\S+),", out).group(1)
    assert float(mean) == pytest.approx(float(np.asarray(full[middle]).mean()), rel=1e-3)
    assert full.shape == (4, 32, 32)


def test_analyst_databroker_on_postgres(stack, published_scan):
    out = _example("databroker_v2.py", stack)
    uid, _ = published_scan
    assert f"latest run: {uid} tomo_scan sample stack-bone" in out
    assert "flats: (1, 4, 32)" in out and "step scans: 1" in out


def test_reader_key_cannot_write(stack, published_scan):
    _, reader = published_scan
    with pytest.raises(Exception, match="401|403|permission"):
        reader["processed"].write_array(np.zeros(3), key=f"not-allowed-{uuid.uuid4().hex[:6]}")


def test_down_leaves_nothing(stack):
    stack.pids_seen |= _all_pids(stack)
    assert len(stack.pids_seen) >= 9
    report = stack.down()
    assert report["stopped"] and report["left_running"] == [] and report["ports_in_use"] == []
    assert [pid for pid in stack.pids_seen if pid_alive(pid)] == []
    assert stack.supervisor.pid() is None and not stack.supervisor.socket.exists()
    assert stack.status() == []
