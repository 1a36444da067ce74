"""The worker's own rules, without a broker: the stop it writes for a silent run,
when ``until_idle`` gives up, and forgetting a closed run's links."""

from types import SimpleNamespace

import pytest

from tomobluesky._errors import NO_STOP_PREFIX
from tomobluesky.transport._consumer import WorkerStats, no_stop_document
from tomobluesky.transport._ledger import Ledger
from tomobluesky.transport._worker import WorkerPolicy, _Worker
from tomobluesky.transport._keys import RunKeys


def test_the_workers_stop_document_is_a_valid_failed_stop():
    from event_model import DocumentNames, schema_validators

    doc = no_stop_document("run-1", 2.5)
    schema_validators[DocumentNames.stop].validate(doc)
    assert doc["run_start"] == "run-1" and doc["exit_status"] == "fail"
    assert doc["reason"] == f"{NO_STOP_PREFIX} within 2.5 s; closed by the worker"
    assert no_stop_document("run-1", 2.5)["uid"] != doc["uid"]


def idle_worker(**consumer):
    fake = SimpleNamespace(**{"stats": WorkerStats(), "session_timeout": 45.0, "assigned_at": None,
                              "unassigned_since": 0.0, "assignment": set(), **consumer})
    return _Worker(fake, None, WorkerPolicy(retry_backoff=None, run_timeout=None))


@pytest.mark.parametrize("now, idle", [(40.0, False), (49.0, False), (50.5, True)])
def test_until_idle_without_partitions_waits_out_a_dead_members_session(now, idle):
    # nothing assigned yet: the broker hands a killed member's partitions over only after 45 s
    assert idle_worker()._idle(now, last_message=0.0, started=0.0, until_idle=5) is idle


def test_until_idle_counts_from_the_assignment():
    worker = idle_worker(assignment={("t", 0)}, assigned_at=46.0)
    assert worker._idle(50.0, last_message=0.0, started=0.0, until_idle=5) is False
    assert worker._idle(51.0, last_message=0.0, started=0.0, until_idle=5) is True
    assert worker._idle(51.0, last_message=48.0, started=0.0, until_idle=5) is False


def test_closing_a_run_forgets_its_links():
    keys = RunKeys(strict=True)
    keys.key("start", {"uid": "A"})
    keys.key("descriptor", {"uid": "d", "run_start": "A"})
    assert keys.key("event", {"descriptor": "d"}) == "A"
    keys.forget("A")
    assert keys.key("event", {"descriptor": "d"}) is None  # a late event is skipped, not misfiled


def test_a_closed_run_is_committable_through_its_last_offset():
    led = Ledger()
    for offset, run in enumerate(["A", "A", "B", "A"]):
        led.add(offset, run)
    led.finish_run("B", through=2)
    led.finish_run("A", through=led.next_offset - 1)  # what closing A does
    assert led.committable() == 4
