"""`tomobluesky stack`: the whole service set under supervisord, the catalogue in a real PostgreSQL.

One stack for the module (free ports, its own root): every service healthy; a reconstruction
worker killed with SIGKILL is restarted by supervisord and rejoins its consumer group; a scan
published through the stack's Kafka becomes a raw run and a volume in the PostgreSQL catalogue,
which answers the analysts' examples; four scans published at once, with the worker holding one
of them killed mid-scan, become four volumes, each exactly once and each its own phantom's, with
no dead letter; `down` leaves no process and no port behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tomobluesky.services.stack import Stack, descendants
from tomobluesky.services.stack_config import StackSettings
from tomobluesky.services.supervisor import pid_alive
from tests.system.waiting import wait_for

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


# --- issue 13 item 5: four scans at once, a worker killed mid-scan ------------------------------
# Each scan images its own phantom (its own slice count and attenuation), so a volume written
# under the wrong scan, or twice, or a half volume, does not pass for the right one.
SCANS = [(2, 0.01), (3, 0.02), (4, 0.03), (5, 0.04)]  # (slices, attenuation per pixel at value 1)


def _scan_documents(stack, n_slices: int, scale: float):
    """One tiny phantom scan run here (its frames in the stack's detector root); its documents kept
    for a publisher to send."""
    from bluesky import RunEngine

    from tomobluesky.devices import PhantomSource, make_sim_beamline
    from tomobluesky.plans import tomo_scan

    source = PhantomSource(n_slices=n_slices, n_columns=32, noise=False, attenuation_scale=scale,
                           sample_name="stack-concurrent")
    docs = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    uid, = RE(tomo_scan(*make_sim_beamline(source, stack.catalog_layout.detector), num_projections=60,
                        num_darks=1, num_flats=1))
    return uid, source.volume, docs


def _publish_in_two_halves(config, docs, halfway: threading.Event, go_on: threading.Event, errors: list):
    """Send the first half of a run's documents, say so, wait for ``go_on``, send the rest (the stop last)."""
    from tomobluesky.transport import KafkaPublisher

    cut = len(docs) // 2
    try:
        with KafkaPublisher(config) as publisher:
            for name, doc in docs[:cut]:
                publisher(name, doc)
            assert publisher.flush(60) == 0
            halfway.set()
            assert go_on.wait(300), "never told to go on"
            for name, doc in docs[cut:]:
                publisher(name, doc)
            assert publisher.flush(60) == 0
    except BaseException as err:  # the main thread reports it
        errors.append(err)
        halfway.set()


def _partition_of(config, uid: str, partitions: int) -> int:
    """The document topic's partition that holds the run ``uid`` (its messages are keyed by its start uid)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": config.bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(config.document_topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is not None and not msg.error() and msg.key() == uid.encode():
                return msg.partition()
        raise AssertionError(f"no message of run {uid} on {config.document_topic}")
    finally:
        c.close()


def _assignments(stack, topic: str, since: dict[str, int] | None = None) -> dict[str, set[int]]:
    """Each reconstruction process's partitions now, from its log: the assigned/revoked events
    since its last start (a restarted process logs into the same file and starts with none), or
    only those written past ``since[name]`` bytes."""
    out = {}
    for name, info in stack.supervisor.processes().items():
        if info["group"] != "reconstruction":
            continue
        held: set[int] = set()
        with open(stack.paths.logs / f"{info['name']}.log", "rb") as f:
            f.seek((since or {}).get(name, 0))
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            parts = {int(p[len(topic) + 1:-1]) for p in event.get("partitions", []) if p.startswith(f"{topic}[")}
            if event.get("event") == "worker-start":
                held = set()
            elif event.get("event") == "assigned":
                held |= parts
            elif event.get("event") == "revoked":
                held -= parts
        out[name] = held
    return out


def _dead_letters(config, partitions: int) -> list[dict]:
    """Every message on the dead-letter topic: its headers (reason, detail, source offset) and key."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": config.bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    try:
        tps = [TopicPartition(config.deadletter_topic, p) for p in range(partitions)]
        total = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in tps])
        got, deadline = [], time.monotonic() + 30
        while len(got) < total and time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is not None and not msg.error():
                got.append({"key": msg.key(), **{k: v.decode(errors="replace") for k, v in msg.headers() or []}})
        assert len(got) == total, f"read {len(got)} of the {total} dead letters"
        return got
    finally:
        c.close()


def _worker_errors(stack) -> list[str]:
    """The workers' log lines about a dead letter or an error (for a failure's message)."""
    lines = []
    for log in sorted(stack.paths.logs.glob("*.log")):
        if log.name.startswith(("reconstruction", "catalog")):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and (event.get("level") == "ERROR" or event.get("event") == "deadletter"):
                    lines.append(f"{log.name} {event.get('ts')}: {event.get('msg')} {event.get('exc', '')[-300:]}")
    return lines


@pytest.fixture(scope="module")
def four_scans(stack):
    """Four scans published at once, each by its own publisher thread: first half, then (once the
    worker holding the first scan's partition is reconstructing it) that worker is killed with
    SIGKILL, then the second halves with the stop documents. Returns once supervisord restarted
    the worker, the group gave the new process a partition and every scan has a complete volume
    and raw run."""
    from tiled.client import from_uri

    from tomobluesky.transport import KafkaConfig

    t0, phases = time.monotonic(), {}  # printed: where the time goes (no assert on it)
    ports, partitions = stack.ports(), stack.settings.kafka.partitions
    config = KafkaConfig(bootstrap=f"127.0.0.1:{ports.kafka}", beamline=stack.settings.beamline)
    scans = [_scan_documents(stack, n, scale) for n, scale in SCANS]
    phases["scans made"] = time.monotonic() - t0
    dead_before = _dead_letters(config, partitions)
    halfway = [threading.Event() for _ in scans]
    go_on, errors = threading.Event(), []
    threads = [threading.Thread(target=_publish_in_two_halves, daemon=True, args=(
        config.replace(journal_dir=stack.root / f"test-journal-{i}"), docs, halfway[i], go_on, errors))
        for i, (_, _, docs) in enumerate(scans)]
    for t in threads:
        t.start()
    reader = from_uri(f"http://127.0.0.1:{ports.tiled}", api_key=stack.catalog_layout.stored_key("reader"))
    try:
        wait_for(lambda: all(e.is_set() for e in halfway), 120, "the first half of every scan published")
        assert not errors, errors
        uid0 = scans[0][0]
        partition = _partition_of(config, uid0, partitions)
        owners: list[list[str]] = []

        def one_owner():
            owners.append([n for n, held in _assignments(stack, config.document_topic).items() if partition in held])
            return len(owners[-1]) == 1

        wait_for(one_owner, 120, f"one reconstruction worker holding partition {partition}")
        victim, = owners[-1]
        wait_for(lambda: uid0 in reader["live"] or uid0 in reader["processed"], 120,
                 f"a live preview of scan {uid0} (the worker is mid-scan)")
        before = stack.supervisor.processes()[victim]["pid"]
        log_seen = (stack.paths.logs / f"{victim.split(':')[1]}.log").stat().st_size
        os.kill(before, signal.SIGKILL)
        phases["worker killed"] = time.monotonic() - t0
    finally:
        go_on.set()  # the rest of every scan, stop documents last, goes out while the worker is gone
    for t in threads:
        t.join(300)
    assert not errors and not any(t.is_alive() for t in threads), errors
    info = {}
    wait_for(lambda: info.update(stack.supervisor.processes()[victim]) or (
        info["statename"] == "RUNNING" and info["pid"] not in (0, before)), 60, "supervisord restarting the worker")
    phases["worker restarted"] = time.monotonic() - t0
    # the group rebalanced: the new process (its log lines after the kill) was handed a partition
    wait_for(lambda: _assignments(stack, config.document_topic, since={victim: log_seen})[victim], 180,
             "the restarted worker getting a partition")
    phases["partition reassigned"] = time.monotonic() - t0
    uids = [uid for uid, _, _ in scans]

    def status(uid):
        processed = reader["processed"]
        if uid not in processed:
            return None
        md = processed[uid].metadata
        assert md.get("status") != "failed", md.get("reason")
        return md.get("status")

    def raw_done(uid):
        return uid in reader["raw"] and reader["raw"][uid].metadata.get("stop")

    wait_for(lambda: all(status(uid) == "complete" and raw_done(uid) for uid in uids), 300,
             "a complete volume and raw run of every scan")
    phases["volumes complete"] = time.monotonic() - t0
    print("four scans, worker killed: " + ", ".join(f"{k} at {v:.1f} s" for k, v in phases.items()))
    stack.pids_seen |= {info["pid"], *_all_pids(stack)}
    return dict(config=config, partitions=partitions, scans=scans, reader=reader, victim=victim, killed=before,
                dead_before=dead_before)


def test_four_scans_at_once_each_make_one_volume(stack, four_scans):
    reader, db = four_scans["reader"], stack.settings.postgres.database
    for (uid, truth, _), (n_slices, _) in zip(four_scans["scans"], SCANS):
        rows = stack.postgres.psql(f"SELECT count(*) FROM nodes n JOIN nodes p ON n.parent = p.id "
                                   f"WHERE n.key = '{uid}' AND p.key = 'processed'", database=db).split()
        assert rows == ["1"], (uid, rows)  # one volume node per scan in PostgreSQL
        assert reader["processed"][uid].metadata["status"] == "complete"
        volume = np.asarray(reader["processed"][uid]["0"][:])
        assert volume.shape == truth.shape == (n_slices, 32, 32)
        assert np.corrcoef(volume.ravel(), truth.ravel())[0, 1] > 0.9, uid
        assert volume.mean() == pytest.approx(truth.mean(), rel=0.1), uid  # its own phantom's attenuation


def test_worker_killed_mid_scan_is_restarted_and_both_are_in_the_group(stack, four_scans):
    assert not pid_alive(four_scans["killed"])
    assert stack.supervisor.processes()[four_scans["victim"]]["pid"] != four_scans["killed"]
    wait_for(lambda: {r.service: r for r in stack.status()}["reconstruction"].healthy, 90,
             "both reconstruction workers in the group")


def test_no_dead_letter_after_the_kill_and_rebalance(stack, four_scans):
    dead = _dead_letters(four_scans["config"], four_scans["partitions"])
    assert dead == four_scans["dead_before"] == [], "\n".join(map(str, [*dead, *_worker_errors(stack)]))


def test_down_leaves_nothing(stack):
    stack.pids_seen |= _all_pids(stack)
    assert len(stack.pids_seen) >= 9
    report = stack.down()
    assert report["stopped"] and report["left_running"] == [] and report["ports_in_use"] == []
    assert [pid for pid in stack.pids_seen if pid_alive(pid)] == []
    assert stack.supervisor.pid() is None and not stack.supervisor.socket.exists()
    assert stack.status() == []
