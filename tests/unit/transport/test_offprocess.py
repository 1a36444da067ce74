"""OffProcess: in-process callbacks run in a real child process, fed by a pipe, so they stop sharing the
RunEngine's GIL. Every test uses a real RunEngine or real documents and a real child; the child records
what it received in a file, which the test reads back."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from bluesky.plans import count
from ophyd.sim import det

from tests.unit.transport.offprocess_child import broken_factory, read, recorder
from tomobluesky.transport import ChildProcessDied, OffProcess

WAIT = 30.0  # only a guard against a hung test: nothing asserts how long anything took
LOGGER = "tomobluesky.transport._offprocess"


def wait_until(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def emitted_by(RE):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc["uid"])))
    return docs


def test_every_document_of_two_runs_arrives_in_order_in_the_child(RE, tmp_path):
    out = tmp_path / "received.jsonl"
    reports = []
    emitted = emitted_by(RE)
    dispatcher = OffProcess(recorder, {"path": str(out)}, name="recorder", on_report=reports.append)
    RE.subscribe(dispatcher)
    assert dispatcher.wait_ready(WAIT)  # the child built its callback
    child_pid = dispatcher.pid
    RE(count([det], num=7))
    RE(count([det], num=3))
    assert dispatcher.flush(WAIT) == 0

    assert read(out) == emitted  # every document, in the order the RunEngine emitted them
    assert Counter(name for name, _ in emitted) == {"start": 2, "descriptor": 2, "event": 10, "stop": 2}
    pids = {line[2] for line in map(__import__("json").loads, out.read_text().splitlines())}
    assert pids == {child_pid} and child_pid != os.getpid()
    stats = dispatcher.stats()
    assert stats["queued"] == stats["delivered"] == 16 and stats["errors"] == 0 and stats["pending"] == 0
    stops = [uid for name, uid in emitted if name == "stop"]
    assert reports == [("stop", stops[0], 10), ("stop", stops[1], 16)]  # report() from the child, in order
    assert dispatcher.close(WAIT) == 0


def test_a_full_pipe_makes_the_producer_wait_and_loses_nothing(tmp_path, caplog):
    out, gate = tmp_path / "received.jsonl", tmp_path / "gate"
    dispatcher = OffProcess(recorder, {"path": str(out), "gate": str(gate)}, maxsize=3, name="bounded")
    produced = []

    def produce():
        for i in range(10):
            dispatcher("event", {"i": i, "hold": i == 0})  # the child holds the first until the gate opens
            produced.append(i)

    producer = threading.Thread(target=produce, daemon=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        producer.start()
        wait_until(lambda: dispatcher.stats()["full_waits"] == 1, "the producer meets a full pipe")
        # one document in the callback's hands and two behind it: the fourth waits for room
        assert producer.is_alive() and produced == [0, 1, 2] and dispatcher.pending() == 3
        assert not out.exists() or read(out) == []
        gate.touch()
        producer.join(WAIT)
        assert not producer.is_alive()
        assert dispatcher.flush(WAIT) == 0
    assert read(out) == [("event", i) for i in range(10)]
    assert dispatcher.stats()["max_backlog"] == 3 and dispatcher.stats()["delivered"] == 10
    assert any("bounded" in r.getMessage() and "waits" in r.getMessage() for r in caplog.records)
    dispatcher.close(WAIT)


def test_a_child_off_the_cpu_does_not_stall_the_producer_for_half_a_megabyte_of_documents(tmp_path):
    """A child at low priority on a busy host can be off the CPU for a while. Its pipe holds 1 MiB (the
    default 64 KiB is about a hundred documents), so the RunEngine's calls return meanwhile."""
    out = tmp_path / "received.jsonl"
    dispatcher = OffProcess(recorder, {"path": str(out)}, name="stopped")
    assert dispatcher.wait_ready(WAIT)
    docs = [("event", {"i": i, "pad": "x" * 1000}) for i in range(500)]  # ~0.5 MB pickled
    produced = []

    def produce():
        for name, doc in docs:
            dispatcher(name, doc)
            produced.append(doc["i"])

    os.kill(dispatcher.pid, signal.SIGSTOP)  # the child, and its reader thread, get no CPU
    try:
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        producer.join(WAIT)
        assert not producer.is_alive() and len(produced) == 500  # never waited on the stopped child
    finally:
        os.kill(dispatcher.pid, signal.SIGCONT)
    assert dispatcher.flush(WAIT) == 0
    assert read(out) == [("event", i) for i in range(500)]
    dispatcher.close(WAIT)


def test_errors_in_the_child_are_counted_and_reported_and_later_documents_still_arrive(RE, tmp_path, caplog):
    out = tmp_path / "received.jsonl"
    emitted = emitted_by(RE)
    dispatcher = OffProcess(recorder, {"path": str(out), "fail_on_seq": [2, 4]}, name="flaky")
    RE.subscribe(dispatcher)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        RE(count([det], num=5))  # the RunEngine never sees the child's errors: the run completes
        assert dispatcher.flush(WAIT) == 0
    events = [uid for name, uid in emitted if name == "event"]
    assert read(out) == [doc for doc in emitted if doc[1] not in (events[1], events[3])]
    assert read(out)[-1][0] == "stop"
    assert dispatcher.stats()["errors"] == 2 and dispatcher.stats()["delivered"] == 8
    assert dispatcher.last_error == "event document: ValueError: planted failure at event 4"
    failures = [r.getMessage() for r in caplog.records if "callback failed in the child" in r.getMessage()]
    assert len(failures) == 2 and "flaky" in failures[0] and "Traceback" in failures[0]  # the first with its trace
    assert dispatcher.close(WAIT) == 0


def test_a_killed_child_is_reported_and_its_documents_are_kept_while_the_scan_goes_on(RE, tmp_path, caplog):
    out, gate = tmp_path / "received.jsonl", tmp_path / "gate"
    emitted = emitted_by(RE)
    dispatcher = OffProcess(recorder, {"path": str(out), "gate": str(gate)}, name="doomed")
    RE.subscribe(dispatcher)
    dispatcher("event", {"i": "held", "hold": True, "uid": "held"})
    RE(count([det], num=4))  # queued behind the held document
    pid = dispatcher.pid
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: dispatcher.stats()["exitcode"] is not None, "the parent notices the death")
        RE(count([det], num=2))  # the RunEngine is not interrupted: these are kept too
    assert emitted[-1][0] == "stop"
    with pytest.raises(ChildProcessDied) as err:
        dispatcher.flush(WAIT)
    message = str(err.value)
    assert "doomed" in message and str(pid) in message and "SIGKILL" in message and "13 documents" in message
    assert any(str(pid) in r.getMessage() and "not delivered" in r.getMessage() for r in caplog.records)
    kept = dispatcher.undelivered()
    assert [(name, doc["uid"]) for name, doc in kept] == [("event", "held")] + emitted  # nothing lost, in order
    assert dispatcher.stats()["undelivered"] == 13 and not out.exists()

    # the caller takes the documents back; the next document starts a new child
    assert len(dispatcher.take_undelivered()) == 13 and dispatcher.undelivered() == []
    RE(count([det], num=1))
    assert dispatcher.flush(WAIT) == 0
    assert read(out) == emitted[-4:] and dispatcher.pid != pid
    assert dispatcher.close(WAIT) == 0


def test_close_drains_the_backlog_and_a_later_document_starts_a_new_child(tmp_path):
    out, gate = tmp_path / "received.jsonl", tmp_path / "gate"
    dispatcher = OffProcess(recorder, {"path": str(out), "gate": str(gate)}, name="closing")
    for i in range(6):
        dispatcher("event", {"i": i, "hold": i == 0})
    first = dispatcher.pid
    assert dispatcher.close(0.05) == 6  # the child still holds the first: nothing acknowledged yet
    gate.touch()
    assert dispatcher.close(WAIT) == 0
    assert read(out) == [("event", i) for i in range(6)]
    assert dispatcher.stats()["exitcode"] == 0 and dispatcher.pid is None  # it exited on its own
    dispatcher("event", {"i": 6})
    assert dispatcher.flush(WAIT) == 0 and dispatcher.pid not in (None, first)
    assert read(out)[-1] == ("event", 6)
    assert dispatcher.close(WAIT) == 0


def test_bad_factories_get_one_clear_error(tmp_path):
    with pytest.raises(TypeError, match="picklable"):
        OffProcess(lambda: print, name="lambda")  # a lambda cannot be built in the child
    dispatcher = OffProcess(broken_factory, {"reason": "no detector file root"}, name="broken")
    dispatcher("start", {"uid": "a"})
    with pytest.raises(ChildProcessDied, match="broken: child process .* exited unexpectedly .exit code 3.: "
                                               "its factory failed: RuntimeError: no detector file root"):
        dispatcher.wait_ready(WAIT)  # the child exits instead of becoming ready
    assert dispatcher.stats()["exitcode"] == 3
    with pytest.raises(ChildProcessDied, match="factory failed: RuntimeError: no detector file root"):
        dispatcher.close(WAIT)
    assert [doc["uid"] for _, doc in dispatcher.undelivered()] == ["a"]


EXIT_SCRIPT = """
import sys
from tests.unit.transport.offprocess_child import recorder
from tomobluesky.transport import OffProcess

if __name__ == "__main__":
    dispatcher = OffProcess(recorder, {"path": sys.argv[1]}, name="at-exit")
    for i in range(200):
        dispatcher("event", {"i": i})
    # no flush, no close: the interpreter's exit must drain the child first
"""


def test_documents_queued_at_interpreter_exit_are_delivered(tmp_path):
    out = tmp_path / "received.jsonl"
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(script), str(out)], cwd=root, env=env, check=True, timeout=WAIT)
    assert read(out) == [("event", i) for i in range(200)]


@pytest.mark.parametrize("idle", [False, True])
def test_the_child_runs_at_the_niceness_and_policy_asked_for(idle):
    """Where cores are few the callbacks' child must not take the CPU from the RunEngine: every thread of
    it (the callback's and the pipe reader's) runs ``nice`` steps lower and, with ``idle``, under SCHED_IDLE."""
    from tests.unit.transport.offprocess_child import scheduling_reporter

    reports = []
    own = os.getpriority(os.PRIO_PROCESS, 0)
    dispatcher = OffProcess(scheduling_reporter, nice=3, idle=idle, on_report=reports.append)
    try:
        dispatcher("start", {"uid": "u"})
        wait_until(lambda: reports, "the child's report")
    finally:
        dispatcher.close()
    threads = reports[0][1]
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    assert len(threads) >= 2 and set(threads) == {(policy, min(own + 3, 19))}
