"""Workers that keep their runs: a service outage is waited out (rewinding, never
dead-lettering), a run without a stop is closed after ``run_timeout``, and
``until_idle`` waits for the partitions of a member that was killed."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tomobluesky._errors import NO_STOP_PREFIX
from tomobluesky.transport import KafkaPublisher, WorkerPolicy, ensure_topics, run_worker
from tests.system.waiting import wait_for

pytestmark = pytest.mark.system


def publish(config, docs):
    with KafkaPublisher(config) as pub:
        for name, doc in docs:
            pub(name, doc)
        assert pub.flush(30) == 0


def committed(config, group) -> int:
    """The group's committed offset of partition 0 (negative when there is none)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": config.bootstrap, "group.id": group})
    try:
        (tp,) = c.committed([TopicPartition(config.document_topic, 0)], timeout=10)
        return tp.offset
    finally:
        c.close()


def connect_error() -> httpx.ConnectError:
    """What httpx (and so Tiled's client) raises when the server is down: a real refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.ConnectError as e:
        return e
    raise AssertionError("something listens on a port just closed")


class RunRecorder:
    """A handler that counts the runs it saw whole (start, every event, stop)."""

    def __init__(self):
        self.docs: dict[str, list] = {}
        self.complete: list[str] = []

    def __call__(self, name, doc):
        run = doc["uid"] if name == "start" else doc.get("run_start") or self._run_of(doc)
        self.docs.setdefault(run, []).append((name, doc))
        if name == "stop" and self.docs[run][0][0] == "start":
            events = sum(1 for n, _ in self.docs[run] if n == "event")
            if events == sum(doc["num_events"].values()):
                self.complete.append(run)

    def _run_of(self, doc):  # events name their descriptor; descriptors name the run
        for run, docs in self.docs.items():
            if any(n == "descriptor" and d["uid"] == doc.get("descriptor") for n, d in docs):
                return run
        return None


def two_runs(RE, documents):
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    RE(count([det], 5))
    RE(count([det], 7))
    split = next(i for i, (n, _) in enumerate(documents) if n == "start" and i > 0)
    return documents[:split], documents[split:]


def test_tiled_outage_on_a_stop_is_waited_out_and_the_run_handled_once(RE, documents, kafka_config):
    run_a, run_b = two_runs(RE, documents)
    uid_b = run_b[0][1]["uid"]
    publish(kafka_config, run_a + run_b)
    handlers, failures, commits_seen = [], [], []

    def fresh_handler():
        recorder = RunRecorder()

        def handle(name, doc):
            if name == "stop" and doc["run_start"] == uid_b and len(failures) < 3:
                commits_seen.append(committed(kafka_config, "recon"))
                failures.append(connect_error())
                raise failures[-1]  # Tiled is down just when the volume would be written
            recorder(name, doc)

        handlers.append(recorder)
        return handle

    resets = []

    def reset():
        resets.append(time.monotonic())
        if len(resets) == 2:  # building a router needs Tiled too (the catalogue's layout)
            raise connect_error()
        return fresh_handler()

    stats = run_worker(kafka_config, fresh_handler(), group_id="recon", reset=reset,
                       policy=WorkerPolicy(once=True, on_error="deadletter", retry_backoff=(0.1, 0.4)))
    assert len(failures) == 3 and len(resets) == 4 and len(handlers) == 4  # one fresh handler per rewind
    complete = [run for h in handlers for run in h.complete]
    assert sorted(complete) == sorted([run_a[0][1]["uid"], uid_b])  # each run handled whole exactly once
    assert handlers[-1].complete == [uid_b] and handlers[-1].docs[uid_b][0][0] == "start"  # B re-read from its start
    assert stats.deadlettered == 0 and stats.reasons == {}
    assert (stats.outages, stats.recoveries, stats.rewinds, stats.runs_finished) == (1, 1, 3, 2)
    assert all(c <= len(run_a) for c in commits_seen)  # never past B's start while B failed
    assert committed(kafka_config, "recon") == len(run_a) + len(run_b)


def test_a_bad_document_error_is_still_dead_lettered(RE, documents, kafka_config):
    run_a, run_b = two_runs(RE, documents)
    publish(kafka_config, run_a + run_b)
    seen = RunRecorder()

    def handle(name, doc):
        if name == "stop" and doc["run_start"] == run_a[0][1]["uid"]:
            raise ValueError("the volume has the wrong shape")  # the document's fault: no retry
        seen(name, doc)

    stats = run_worker(kafka_config, handle, group_id="recon",
                       policy=WorkerPolicy(once=True, on_error="deadletter", retry_backoff=(0.1, 0.4)))
    assert stats.deadlettered == 1 and stats.reasons == {"handler-error": 1}
    assert stats.outages == 0 and stats.rewinds == 0
    assert seen.complete == [run_b[0][1]["uid"]]
    assert committed(kafka_config, "recon") == len(run_a) + len(run_b)


def test_a_run_without_stop_is_closed_after_run_timeout(RE, documents, kafka_config):
    run_a, run_b = two_runs(RE, documents)
    uid_a = run_a[0][1]["uid"]
    (stop_a,) = [x for x in run_a if x[0] == "stop"]
    publish(kafka_config, run_a[:-1])  # the RunEngine died before run A's stop
    got, halt = [], threading.Event()
    worker_stats = []
    worker = threading.Thread(target=lambda: worker_stats.append(run_worker(
        kafka_config, lambda n, d: got.append((n, d)), group_id="recon", stop=halt,
        policy=WorkerPolicy(run_timeout=2))))
    t0 = time.monotonic()
    worker.start()
    try:
        wait_for(lambda: any(n == "stop" for n, _ in got), 30, "the worker's own stop document")
        waited = time.monotonic() - t0
        name, stop = got[-1]
        assert stop["run_start"] == uid_a and stop["exit_status"] == "fail" and stop["uid"] != stop_a[1]["uid"]
        assert stop["reason"] == f"{NO_STOP_PREFIX} within 2 s; closed by the worker"
        assert 2 <= waited < 20
        wait_for(lambda: committed(kafka_config, "recon") == len(run_a) - 1, 10, "the commit past run A")
        publish(kafka_config, [stop_a] + run_b)  # A's real stop comes late, then a whole run
        wait_for(lambda: any(n == "stop" and d["run_start"] == run_b[0][1]["uid"] for n, d in got), 30, "run B")
    finally:
        halt.set()
        worker.join(30)
    (stats,) = worker_stats
    assert stop_a[1]["uid"] not in [d["uid"] for n, d in got if n == "stop"]  # the late stop was not handed over
    assert (stats.runs_timed_out, stats.late_stops, stats.runs_finished) == (1, 1, 1)
    assert committed(kafka_config, "recon") == len(run_a) + len(run_b)


KILLED_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "session.timeout.ms": int(sys.argv[4])})
c.subscribe([sys.argv[3]])
while not c.assignment():
    c.poll(0.2)
print("assigned", flush=True)
while True:
    c.poll(0.5)
"""


def test_until_idle_waits_for_the_partitions_of_a_killed_member(RE, documents, kafka_config):
    # a session of 8 s (librdkafka's default is 45 s) keeps the test short; a worker that gave up after
    # until_idle seconds without partitions would quit before the broker hands the killed member's over
    session_s, until_idle = 8, 3
    kafka_config = dataclasses.replace(kafka_config, consumer_config={"session.timeout.ms": session_s * 1000})
    run_a, _ = two_runs(RE, documents)
    ensure_topics(kafka_config)
    publish(kafka_config, run_a)
    member = subprocess.Popen([sys.executable, "-c", KILLED_MEMBER, kafka_config.bootstrap, "recon",
                               kafka_config.document_topic, str(session_s * 1000)], stdout=subprocess.PIPE, text=True)
    try:
        assert member.stdout.readline().strip() == "assigned"
    finally:
        member.send_signal(signal.SIGKILL)  # it never leaves the group: the broker waits out its session
        member.wait(10)
    seen = RunRecorder()
    t0 = time.monotonic()
    stats = run_worker(kafka_config, seen, group_id="recon", policy=WorkerPolicy(until_idle=until_idle))
    took = time.monotonic() - t0
    assert seen.complete == [run_a[0][1]["uid"]] and stats.runs_finished == 1, f"gave up after {took:.0f} s"
    assert took < session_s + until_idle + 15


class StrictRunRecorder(RunRecorder):
    """Refuses a run's start document a second time, as event_model's RunRouter does."""

    def __call__(self, name, doc):
        if name == "start" and doc["uid"] in self.docs:
            raise ValueError("RunRouter received the same 'start' document twice")
        super().__call__(name, doc)


def test_a_rebalance_in_the_middle_of_a_run_restarts_it_afresh_without_dead_letters(RE, documents, kafka_config):
    """Another member joins and leaves while the worker holds half a run: the partition is revoked and
    assigned again, the run is read again from its start (the committed offset), and the worker reads it
    into a fresh handler instead of dead-lettering its repeated start document."""
    from confluent_kafka import Consumer

    run_a, run_b = two_runs(RE, documents)
    ensure_topics(kafka_config)
    half = len(run_b) // 2
    publish(kafka_config, run_a + run_b[:half])
    handlers, stop = [], threading.Event()

    def fresh():
        handlers.append(StrictRunRecorder())
        return handlers[-1]

    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("stats", run_worker(
        kafka_config, fresh(), group_id="recon", reset=fresh, stop=stop,
        policy=WorkerPolicy(on_error="deadletter", retry_backoff=(0.1, 0.4)))))
    worker.start()
    uid_b = run_b[0][1]["uid"]
    try:
        wait_for(lambda: len(handlers[-1].docs.get(uid_b, [])) == half, 60, "the first half of run B read")
        intruder = Consumer({"bootstrap.servers": kafka_config.bootstrap, "group.id": "recon",
                             "enable.auto.commit": False})  # it reads, but commits nothing
        joined = []  # the group's rebalances are eager: joining revokes every member's partitions first
        intruder.subscribe([kafka_config.document_topic], on_assign=lambda c, parts: joined.append(parts))
        wait_for(lambda: intruder.poll(0.2) is not None and False or joined, 60,
                 "a rebalance with the second member", interval=0)
        intruder.close()  # leaves: the partition goes back to the worker, from the committed offset
        publish(kafka_config, run_b[half:])
        wait_for(lambda: uid_b in handlers[-1].complete, 90, "run B complete")
    finally:
        stop.set()
        worker.join(60)
    stats = result["stats"]
    assert stats.deadlettered == 0 and stats.reasons == {}
    assert stats.rewinds >= 1 and len(handlers) >= 2  # a fresh handler after the rebalance
    complete = [run for h in handlers for run in h.complete]
    assert sorted(complete) == sorted([run_a[0][1]["uid"], uid_b])  # each run whole, exactly once
