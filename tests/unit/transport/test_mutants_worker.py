"""The worker loop (tomobluesky/transport/_worker.py) without a broker: WorkerPolicy's rules, handing documents
over, handler errors, outages (pause, backoff, fresh handler, rewind, recovery), silent runs, rebalances and
run_worker itself, over the in-memory stand-in for confluent-kafka's client of test_mutants_consumer.py (the
worker and DocumentConsumer run unchanged). Written against mutmut's survivors (docs/testing.md)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.unit.transport.test_mutants_consumer import EVENT, TP, T, FakeConsumer, FakeProducer, put, run_docs
from tomobluesky._errors import NO_STOP_PREFIX
from tomobluesky.transport._codec import pack
from tomobluesky.transport._config import KafkaConfig
from tomobluesky.transport._consumer import Delivery, DocumentConsumer
from tomobluesky.transport._worker import HandlerError, WorkerPolicy, _Worker, run_complete, run_worker

LOGGER = "tomobluesky.transport.worker"
FAST = dict(retry_backoff=(0.01, 0.04), run_timeout=None, commit_interval=0.0)


class Client(FakeConsumer):
    """The fake client, keeping one timeline of what the worker made it do (and what handlers saw)."""

    timeline: list  # shared with the handlers of a test

    def __init__(self, settings):
        super().__init__(settings)
        self.timeline = []
        self.hooks = []  # called before each consume (a rebalance, a stop)

    def consume(self, num_messages=1, timeout=-1):
        for hook in list(self.hooks):
            hook(self)
        out = super().consume(num_messages, timeout)
        self.timeline.append(("consume", timeout, sum(m.error() is None for m in out)))
        return out

    def pause(self, partitions):
        self.timeline.append(("pause",))
        super().pause(partitions)

    def resume(self, partitions):
        self.timeline.append(("resume",))
        super().resume(partitions)

    def seek(self, tp):
        self.timeline.append(("seek", tp.partition, tp.offset))
        super().seek(tp)


@pytest.fixture
def kafka(monkeypatch):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", Client)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)


@pytest.fixture
def consumer(kafka):
    c = DocumentConsumer(KafkaConfig(bootstrap="broker:9092", topic=T), "group-1")
    c._consumer.assign_now((T, 0))
    return c


class Handler:
    """Records what it was given; ``fail(name, doc)`` may return an exception to raise instead."""

    def __init__(self, client=None, fail=None, label="h"):
        self.seen, self.fail, self.client, self.label = [], fail, client, label

    def __call__(self, name, doc):
        if self.client is not None:
            self.client.timeline.append(("handle", self.label, name, doc.get("uid")))
        error = self.fail(name, doc) if self.fail else None
        if error is not None:
            raise error
        self.seen.append((name, doc.get("uid")))


def uids(run, n_events=1, stop=True):
    out = [("start", run), ("descriptor", f"{run}-d")] + [("event", f"{run}-e{i}") for i in range(n_events)]
    return out + ([("stop", f"{run}-s")] if stop else [])


def records(caplog, event):
    return [r for r in caplog.records if getattr(r, "event", None) == event]


# --- WorkerPolicy ------------------------------------------------------------------------------------

def test_the_default_policy():
    p = WorkerPolicy()
    assert (p.durable, p.on_error, p.retry_backoff, p.run_timeout, p.once, p.until_idle, p.validate,
            p.commit_interval) == (run_complete, "raise", (0.5, 30.0), 3600.0, False, None, True, 0.2)
    q = p.replace(once=True, on_error="deadletter")
    assert q.once and q.on_error == "deadletter" and q.retry_backoff == (0.5, 30.0) and not p.once
    with pytest.raises(ValueError, match="on_error must be"):
        p.replace(on_error="ignore")


@pytest.mark.parametrize("changes, message", [
    ({"on_error": "ignore"}, "on_error must be 'raise' or 'deadletter', not 'ignore'"),
    ({"retry_backoff": (0.0, 1.0)}, "retry_backoff must be (first, longest) with 0 < first <= longest"),
    ({"retry_backoff": (-1.0, 1.0)}, "retry_backoff must be (first, longest) with 0 < first <= longest"),
    ({"retry_backoff": (2.0, 1.0)}, "retry_backoff must be (first, longest) with 0 < first <= longest"),
    ({"run_timeout": 0}, "run_timeout must be positive (or None)"),
    ({"run_timeout": -5.0}, "run_timeout must be positive (or None)"),
    ({"until_idle": -0.5}, "until_idle must be >= 0 (or None)"),
])
def test_policy_refusals_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError) as err:
        WorkerPolicy(**changes)
    assert str(err.value) == message


def test_policy_edges_that_are_allowed():
    for ok in (dict(on_error="deadletter"), dict(retry_backoff=(1.0, 1.0)), dict(retry_backoff=None),
               dict(run_timeout=0.001), dict(run_timeout=None), dict(until_idle=0), dict(until_idle=None)):
        assert WorkerPolicy(**ok)


def test_run_complete_is_the_stop():
    assert run_complete("stop", {}) and not run_complete("event", {}) and not run_complete("start", {})


# --- handing over ------------------------------------------------------------------------------------

def test_every_document_is_handed_over_in_order_and_finished_runs_are_committed(consumer, caplog):
    docs_a, stop_a = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, stop_a, *docs_b)  # A: 0-3, B: 4-6 (no stop)
    handler = Handler()
    worker = _Worker(consumer, handler, WorkerPolicy(once=True, **FAST))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    assert handler.seen == uids("A") + uids("B", stop=False)
    s = consumer.stats
    assert (s.handled, s.runs_finished, s.deadlettered, s.outages, s.rewinds, s.runs_timed_out) == (7, 1, 0, 0, 0, 0)
    assert consumer._consumer.commits[-1] == [(T, 0, 4)]  # past A, never into B
    (done,) = records(caplog, "run-finished")
    assert done.getMessage() == "run finished"
    assert (done.run, done.partition, done.offset) == ("A", 0, 3)


def test_a_custom_durability_rule_commits_earlier_and_counts_only_stops_as_finished_runs(consumer):
    docs, stop = run_docs("A", n_events=2)
    put(consumer, *docs)  # 0-3, no stop yet
    worker = _Worker(consumer, Handler(), WorkerPolicy(once=True, durable=lambda name, doc: name == "event", **FAST))
    worker.run()
    assert consumer._consumer.commits[-1] == [(T, 0, 4)] and consumer.stats.runs_finished == 0
    put(consumer, stop)
    every = WorkerPolicy(once=True, durable=lambda name, doc: True, **FAST)
    _Worker(consumer, Handler(), every).run()
    assert consumer.stats.runs_finished == 1 and consumer._consumer.commits[-1] == [(T, 0, 5)]


def test_without_once_or_until_idle_the_loop_runs_until_stopped(consumer):
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    halt = threading.Event()
    consumer._consumer.hooks.append(lambda client: len(client.timeline) >= 6 and halt.set())
    handler = Handler()
    _Worker(consumer, handler, WorkerPolicy(**FAST)).run(halt)
    assert handler.seen == uids("A")
    polls = [e for e in consumer._consumer.timeline if e[0] == "consume"]
    assert len(polls) >= 6 and polls[0][1] == 0.2  # the loop waits 0.2 s for a first message


def test_a_stop_set_before_the_loop_reads_nothing(consumer):
    put(consumer, *run_docs("A")[0])
    halt = threading.Event()
    halt.set()
    handler = Handler()
    _Worker(consumer, handler, WorkerPolicy(**FAST)).run(halt)
    assert handler.seen == [] and consumer._consumer.timeline == []


def test_commits_wait_for_the_commit_interval(consumer, monkeypatch):
    from tomobluesky.transport import _worker

    clock = iter(range(1000, 10**6))
    monkeypatch.setattr(_worker.time, "monotonic", lambda: float(next(clock)))
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    halt = threading.Event()
    consumer._consumer.hooks.append(lambda client: len(client.timeline) >= 4 and halt.set())
    _Worker(consumer, Handler(), WorkerPolicy(**{**FAST, "commit_interval": 10**7})).run(halt)
    # the first pass commits (nothing committed since time 0); later passes are within the interval
    assert consumer._consumer.commits == []  # nothing was committable at the first pass
    assert consumer.ledgers[(T, 0)].committable() == 4


# --- handler errors ----------------------------------------------------------------------------------

def test_on_error_raise_names_the_document_and_commits_nothing_past_it(consumer, caplog):
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    handler = Handler(fail=lambda name, doc: ValueError("bad value") if name == "event" else None)
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(HandlerError) as err:
        _Worker(consumer, handler, WorkerPolicy(once=True, **FAST)).run()
    assert str(err.value) == f"handle('event', ...) failed for run A at {T}[0]@2: bad value"
    assert isinstance(err.value.__cause__, ValueError)
    assert consumer._consumer.commits == [] and consumer.stats.deadlettered == 0
    (rec,) = records(caplog, "handler-error")
    assert rec.getMessage() == "handler failed on the event document of run A"
    assert (rec.doc_name, rec.run, rec.partition, rec.offset) == ("event", "A", 0, 2) and rec.exc_info


def test_on_error_deadletter_sends_the_document_and_goes_on(consumer):
    docs_a, stop_a = run_docs("A")
    docs_b, stop_b = run_docs("B")
    put(consumer, *docs_a, stop_a, *docs_b, stop_b)
    bad = {"A-e0", "B-s"}  # an event, and a stop: a failed stop still ends its run
    handler = Handler(fail=lambda name, doc: ValueError(f"no {doc['uid']}") if doc["uid"] in bad else None)
    _Worker(consumer, handler, WorkerPolicy(once=True, on_error="deadletter", **FAST)).run()
    assert handler.seen == [u for u in uids("A") + uids("B") if u[1] not in bad]
    s = consumer.stats
    assert s.deadlettered == 2 and s.reasons == {"handler-error": 2} and s.runs_finished == 1 and s.handled == 6
    event = {**EVENT, "uid": "A-e0", "descriptor": "A-d", "seq_num": 1}
    assert consumer._dlq.produced[0] == (f"{T}.deadletter", b"A", pack("event", event),
                                         [("reason", b"handler-error"), ("detail", b"ValueError: no A-e0")])
    assert consumer._dlq.produced[1][:2] == (f"{T}.deadletter", b"B")
    assert consumer._consumer.commits[-1] == [(T, 0, 8)]  # everything: B ended at its (failed) stop


def test_a_document_that_fails_again_after_a_rewind_is_not_dead_lettered_twice(consumer):
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    tries = {"stop": 0}

    def fail(name, doc):
        if name == "event":
            return ValueError("never")
        if name == "stop" and tries["stop"] == 0:
            tries["stop"] += 1
            return ConnectionError("catalogue down")
        return None

    handler = Handler(fail=fail)
    _Worker(consumer, handler, WorkerPolicy(once=True, on_error="deadletter", **FAST)).run()
    s = consumer.stats
    assert (s.deadlettered, s.rewinds, s.outages, s.recoveries, s.runs_finished) == (1, 1, 1, 1, 1)
    assert len(consumer._dlq.produced) == 1 and s.reasons == {"handler-error": 1}
    assert handler.seen == [("start", "A"), ("descriptor", "A-d")] * 2 + [("stop", "A-s")]


def test_a_handler_error_on_the_workers_own_stop_closes_the_run(consumer):
    docs, stop = run_docs("A")
    put(consumer, *docs)
    consumer.poll(timeout=0)
    (closing,) = consumer.silent_runs(1.0, 1e12)
    worker = _Worker(consumer, Handler(fail=lambda name, doc: KeyError("x")),
                     WorkerPolicy(on_error="deadletter", **FAST))
    assert worker.deliver(closing, None) is True
    assert consumer.stats.runs_timed_out == 1 and list(consumer.closed) == ["A"]
    assert consumer.stats.deadlettered == 1 and consumer.ledgers[(T, 0)].committable() == 3


def test_without_backoff_an_unreachable_service_is_a_handler_error(consumer):
    put(consumer, *run_docs("A")[0])
    handler = Handler(fail=lambda name, doc: ConnectionError("refused") if name == "descriptor" else None)
    with pytest.raises(HandlerError, match="refused"):
        _Worker(consumer, handler, WorkerPolicy(once=True, **{**FAST, "retry_backoff": None})).run()
    assert consumer.stats.outages == 0 and consumer.stats.rewinds == 0


# --- outages -----------------------------------------------------------------------------------------

def outage_handler(client, failures, label="first", at="A-e0"):
    """Raises ConnectionError on document ``at`` the first ``failures`` times it sees it."""
    left = {"n": failures}

    def fail(name, doc):
        if doc.get("uid") == at and left["n"] > 0:
            left["n"] -= 1
            return ConnectionError(f"catalogue refused ({left['n']} left)")
        return None

    return Handler(client, fail, label)


def test_an_outage_pauses_waits_rewinds_and_reads_the_run_again_with_a_fresh_handler(consumer, caplog):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    first = outage_handler(client, failures=1)
    fresh = []

    def reset():
        fresh.append(Handler(client, label=f"fresh{len(fresh)}"))
        return fresh[-1]

    worker = _Worker(consumer, first, WorkerPolicy(once=True, **FAST), reset)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    assert first.seen == [("start", "A"), ("descriptor", "A-d")]
    assert len(fresh) == 1 and fresh[0].seen == uids("A")
    s = consumer.stats
    assert (s.outages, s.recoveries, s.rewinds, s.handled, s.runs_finished) == (1, 1, 1, 6, 1)
    assert client.commits[-1] == [(T, 0, 4)]
    # between the failure and the rewind the partition is paused and nothing is fetched
    timeline = client.timeline
    failed = timeline.index(("handle", "first", "event", "A-e0"))
    seek = timeline.index(("seek", 0, 0))
    between = timeline[failed + 1:seek]
    assert between[0] == ("pause",) and all(e[2] == 0 for e in between if e[0] == "consume")
    assert [e for e in between if e[0] == "consume"] and all(0 < e[1] <= 0.01 for e in between if e[0] == "consume")
    assert timeline[seek + 1] == ("resume",)
    (out,) = records(caplog, "outage")
    assert out.getMessage() == ("a service is unreachable (ConnectionError: catalogue refused (0 left)); pausing, "
                                "nothing of run A is committed; retrying in 0.0 s")
    assert (out.doc_name, out.run, out.partition, out.offset, out.retry_in_s) == ("event", "A", 0, 2, 0.01)
    assert out.error == "ConnectionError: catalogue refused (0 left)"
    (back,) = records(caplog, "recovered")
    assert back.getMessage().startswith("the service is back after ") and back.getMessage().endswith(
        " s; the worker goes on")
    assert back.rewinds == 1 and back.outage_s >= 0 and records(caplog, "outage-retry") == []


def test_the_backoff_doubles_to_its_longest_and_starts_again_after_a_recovery(consumer, caplog):
    client = consumer._consumer
    docs_a, stop_a = run_docs("A")
    docs_b, stop_b = run_docs("B")
    put(consumer, *docs_a, stop_a, *docs_b, stop_b)
    left = {"A-e0": 4, "B-e0": 1}

    def fail(name, doc):
        if left.get(doc["uid"], 0) > 0:
            left[doc["uid"]] -= 1
            return TimeoutError("x" * 600)
        return None

    handler = Handler(client, fail)
    worker = _Worker(consumer, handler, WorkerPolicy(once=True, **FAST))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    s = consumer.stats
    assert (s.outages, s.recoveries, s.rewinds, s.runs_finished) == (2, 2, 5, 2)
    delays = [(r.event, r.retry_in_s) for r in caplog.records if r.event in ("outage", "outage-retry")]
    assert delays == [("outage", 0.01), ("outage-retry", 0.02), ("outage-retry", 0.04), ("outage-retry", 0.04),
                      ("outage", 0.01)]
    assert worker.delay == 0.01
    retry = records(caplog, "outage-retry")[0]
    assert retry.getMessage().startswith("still unreachable after ") and retry.getMessage().endswith(
        " s (TimeoutError); retrying in 0.0 s")
    assert retry.outage_s >= 0 and (retry.doc_name, retry.offset) == ("event", 2)
    assert retry.error == ("TimeoutError: " + "x" * 600)[:500]  # the error is cut at 500 characters
    # the handler is kept when there is no reset: it sees A's start again after every rewind
    assert handler.seen.count(("start", "A")) == 5 and handler.seen.count(("stop", "A-s")) == 1


def test_a_long_backoff_keeps_polling_the_group_at_most_every_0_2_s(consumer):
    client = consumer._consumer
    put(consumer, *run_docs("A")[0])
    handler = outage_handler(client, failures=1)
    _Worker(consumer, handler, WorkerPolicy(once=True, **{**FAST, "retry_backoff": (0.3, 0.3)})).run()
    failed = client.timeline.index(("handle", "first", "event", "A-e0"))
    seek = client.timeline.index(("seek", 0, 0))
    waits = [e[1] for e in client.timeline[failed:seek] if e[0] == "consume"]
    assert max(waits) == 0.2 and len(waits) >= 2 and 0 < min(waits) < 0.2


def test_a_stop_during_the_backoff_ends_the_worker_without_a_rewind(consumer):
    client = consumer._consumer
    put(consumer, *run_docs("A")[0])
    halt = threading.Event()
    resets = []
    handler = outage_handler(client, failures=1)
    client.hooks.append(lambda c: ("pause",) in c.timeline and halt.set())
    worker = _Worker(consumer, handler, WorkerPolicy(**{**FAST, "retry_backoff": (5.0, 5.0)}),
                     lambda: resets.append(1))
    worker.run(halt)  # returns at once, not after the 5 s backoff
    s = consumer.stats
    assert (s.outages, s.rewinds, s.recoveries) == (1, 0, 0) and resets == [] and client.seeks == []
    assert worker.delay == 5.0


def test_a_stop_set_by_the_failing_handler_skips_the_backoff(consumer):
    client = consumer._consumer
    put(consumer, *run_docs("A")[0])
    halt = threading.Event()

    def fail(name, doc):
        if name == "event":
            halt.set()
            return ConnectionError("down")
        return None

    worker = _Worker(consumer, Handler(client, fail), WorkerPolicy(**{**FAST, "retry_backoff": (5.0, 5.0)}))
    worker.run(halt)
    failed = client.timeline.index(("handle", "h", "event", "A-e0"))
    assert [e for e in client.timeline[failed:] if e[0] == "consume"] == []
    assert consumer.stats.rewinds == 0 and client.seeks == []


def test_a_reset_that_fails_transiently_is_retried_and_one_that_fails_otherwise_is_raised(consumer, caplog):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    attempts = []
    fresh = Handler(client, label="fresh")

    def reset():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"layout unreachable {len(attempts)}")
        return fresh

    worker = _Worker(consumer, outage_handler(client, 1), WorkerPolicy(once=True, **FAST), reset)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    assert len(attempts) == 3 and fresh.seen == uids("A")
    assert consumer.stats.outages == 1 and consumer.stats.rewinds == 1
    retries = records(caplog, "outage-retry")
    assert [r.error for r in retries] == [f"ConnectionError: layout unreachable {i}" for i in (1, 2)]
    assert [r.retry_in_s for r in retries] == [0.02, 0.04]

    # a lasting error of reset() is raised, not retried: it must not pass for transient because it was raised
    # while the outage's ConnectionError was being handled (its implicit context); it was retried forever
    halt, calls = threading.Event(), []

    def broken():
        calls.append(1)
        if len(calls) == 3:
            halt.set()
        raise ValueError("no such catalogue layout")

    put(consumer, *run_docs("B")[0])
    worker = _Worker(consumer, outage_handler(client, 1, at="B-e0"), WorkerPolicy(once=True, **FAST), broken)
    with pytest.raises(ValueError, match="no such catalogue layout") as err:
        worker.run(halt)
    assert calls == [1] and err.value.__context__ is None


def test_recovery_comes_at_the_failed_offset_of_the_failed_partition(consumer):
    client = consumer._consumer
    client.assign_now((T, 1))
    docs_a, stop_a = run_docs("A", n_events=3)  # partition 0: 0-5
    docs_b, stop_b = run_docs("B", n_events=3)  # partition 1: 0-5
    put(consumer, *docs_a, stop_a, partition=0)
    put(consumer, *docs_b, stop_b, partition=1)
    worker = _Worker(consumer, None, WorkerPolicy(**FAST))
    seen = []

    def handle(name, doc):
        if doc["uid"] == "A-e1" and "failed" not in seen:
            seen.append("failed")
            raise ConnectionError("down")
        seen.append((doc["uid"], worker.stats.recoveries))

    worker.handle = handle
    batch = consumer.poll(timeout=0)
    assert [d.offset for d in batch[:4]] == [0, 1, 2, 3]
    assert worker.deliver(batch[0], None) and worker.deliver(batch[1], None) and worker.deliver(batch[2], None)
    assert worker.deliver(batch[3], None) is False  # A-e1 at offset 3 of partition 0: rewound
    assert worker.outage["tp"] == (T, 0) and worker.outage["offset"] == 3
    # partition 1 is read first now, past offset 3: that is no recovery
    client.paused.add((T, 0))
    for d in consumer.poll(timeout=0):
        assert worker.deliver(d, None)
    assert worker.stats.recoveries == 0 and worker.outage is not None
    client.paused.clear()
    again = consumer.poll(timeout=0)
    assert [(d.partition, d.offset) for d in again] == [(0, o) for o in range(6)]
    for d in again:
        assert worker.deliver(d, None)
    assert [s for s in seen if s != "failed" and s[0].startswith("A")] == [
        ("A", 0), ("A-d", 0), ("A-e0", 0), ("A", 0), ("A-d", 0), ("A-e0", 0), ("A-e1", 0), ("A-e2", 1), ("A-s", 1)]
    assert worker.outage is None and worker.delay == 0.01


def test_an_outage_whose_partition_went_to_another_member_is_over(consumer):
    client = consumer._consumer
    client.assign_now((T, 1))
    put(consumer, *run_docs("A")[0], partition=0)
    put(consumer, *run_docs("B")[0], partition=1)
    worker = _Worker(consumer, outage_handler(client, 1, at="A-d"), WorkerPolicy(**FAST))
    batch = consumer.poll(timeout=0)
    assert worker.deliver(batch[0], None) and worker.deliver(batch[1], None) is False
    client.on_revoke(client, [TP(T, 0)])
    client.assigned.remove((T, 0))
    (first_b, *_) = consumer.poll(timeout=0)
    assert first_b.partition == 1 and first_b.offset == 0  # below the failed offset 1, on another partition
    assert worker.deliver(first_b, None)
    assert worker.stats.recoveries == 1 and worker.outage is None


# --- silent runs -------------------------------------------------------------------------------------

def test_a_silent_run_is_closed_with_the_workers_stop_and_committed(consumer, caplog):
    docs, _ = run_docs("A")
    put(consumer, *docs)
    handler = Handler()
    halt = threading.Event()
    consumer._consumer.hooks.append(lambda c: handler.seen and handler.seen[-1][0] == "stop" and halt.set())
    worker = _Worker(consumer, handler, WorkerPolicy(**{**FAST, "run_timeout": 0.05}))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run(halt)
    assert handler.seen[:3] == uids("A", stop=False) and handler.seen[3][0] == "stop" and len(handler.seen) == 4
    s = consumer.stats
    assert (s.runs_timed_out, s.runs_finished, s.handled) == (1, 0, 4) and list(consumer.closed) == ["A"]
    assert consumer._consumer.commits[-1] == [(T, 0, 3)]
    (rec,) = records(caplog, "run-timeout")
    assert rec.getMessage() == "run A sent no document for 0.05 s; the worker closes it with a failed stop document"
    assert (rec.run, rec.partition, rec.offset, rec.run_timeout_s) == ("A", 0, 2, 0.05)


def test_the_workers_stop_document_reaches_the_handler(consumer):
    put(consumer, *run_docs("A")[0])
    consumer.poll(timeout=0)
    got = []
    worker = _Worker(consumer, lambda name, doc: got.append((name, doc)), WorkerPolicy(**{**FAST, "run_timeout": 1.0}))
    assert worker.close_silent_runs(1e12, None) is True
    ((name, doc),) = got
    assert name == "stop" and doc["run_start"] == "A" and doc["exit_status"] == "fail"
    assert doc["reason"] == f"{NO_STOP_PREFIX} within 1 s; closed by the worker"
    assert worker.close_silent_runs(1e12, None) is True and len(got) == 1  # closed once


def test_no_run_timeout_never_closes_a_run(consumer):
    put(consumer, *run_docs("A")[0])
    consumer.poll(timeout=0)
    got = []
    worker = _Worker(consumer, lambda name, doc: got.append(name), WorkerPolicy(**FAST))
    assert worker.close_silent_runs(1e12, None) is True and got == []


def test_an_outage_while_closing_a_silent_run_rewinds(consumer):
    put(consumer, *run_docs("A")[0], *run_docs("B")[0])
    consumer.poll(timeout=0)
    worker = _Worker(consumer, lambda name, doc: (_ for _ in ()).throw(ConnectionError("down")),
                     WorkerPolicy(**{**FAST, "run_timeout": 1.0}))
    assert worker.close_silent_runs(1e12, None) is False
    assert consumer.stats.rewinds == 1 and consumer.stats.runs_timed_out == 0 and consumer.closed == {}


# --- rebalances --------------------------------------------------------------------------------------

def rebalance_after(client, uid, then=()):
    """Once the handlers have seen ``uid``: the partition is taken and given back, read again from its committed
    offset, and the messages ``then`` arrive."""
    def hook(c):
        if any(e[0] == "handle" and e[3] == uid for e in c.timeline) and not getattr(c, "rebalanced", False):
            c.rebalanced = True
            c.on_revoke(c, [TP(T, 0)])
            c.position[(T, 0)] = ([0] + [o for commit in c.commits for (_, _, o) in commit])[-1]
            c.on_assign(c, [TP(T, 0)])
            c.logs[(T, 0)] += [(None, pack(name, doc)) for name, doc in then]
    client.hooks.append(hook)


def test_a_rebalance_that_takes_an_unfinished_run_reads_it_again_with_a_fresh_handler(consumer, caplog):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)
    first = Handler(client, label="first")
    fresh = []

    def reset():
        fresh.append(Handler(client, label="fresh"))
        return fresh[-1]

    rebalance_after(client, "A-e0", then=[stop])
    worker = _Worker(consumer, first, WorkerPolicy(once=True, **FAST), reset)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    assert first.seen == uids("A", stop=False) and len(fresh) == 1 and fresh[0].seen == uids("A")
    s = consumer.stats
    assert (s.rewinds, s.deadlettered, s.runs_finished) == (1, 0, 1) and consumer.lost_runs is False
    (rec,) = records(caplog, "rebalance-restart")
    assert rec.getMessage() == ("a rebalance took partitions with unfinished runs; unfinished runs are read "
                                "again afresh")
    assert client.commits[-1] == [(T, 0, 4)]


def test_a_fresh_handler_after_a_rebalance_is_waited_for_while_the_service_is_down(consumer, caplog):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)
    tries = []
    fresh = Handler(client, label="fresh")

    def reset():
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError(f"down {len(tries)}")
        return fresh

    rebalance_after(client, "A-e0", then=[stop])
    worker = _Worker(consumer, Handler(client, label="first"), WorkerPolicy(once=True, **FAST), reset)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        worker.run()
    assert len(tries) == 3 and fresh.seen == uids("A") and consumer.stats.rewinds == 1
    retries = records(caplog, "outage-retry")
    assert [r.getMessage() for r in retries] == [
        "cannot build a fresh handler yet (ConnectionError: down 1); retrying in 0.0 s",
        "cannot build a fresh handler yet (ConnectionError: down 2); retrying in 0.0 s"]
    assert worker.delay == 0.04


def test_a_fresh_handler_that_cannot_be_built_is_an_error(consumer):
    client = consumer._consumer
    put(consumer, *run_docs("A")[0])
    rebalance_after(client, "A-d")

    def reset():
        raise ConnectionError("down")

    worker = _Worker(consumer, Handler(client), WorkerPolicy(once=True, **{**FAST, "retry_backoff": None}), reset)
    with pytest.raises(ConnectionError, match="down"):
        worker.run()

    def wrong():
        raise ValueError("bad layout")

    worker = _Worker(consumer, Handler(client), WorkerPolicy(once=True, **FAST), wrong)
    consumer.lost_runs = True
    with pytest.raises(ValueError, match="bad layout"):
        worker.run()


def test_a_stop_while_waiting_for_a_fresh_handler_ends_the_worker(consumer):
    client = consumer._consumer
    put(consumer, *run_docs("A")[0])
    rebalance_after(client, "A-d")
    halt = threading.Event()

    def reset():
        halt.set()
        raise ConnectionError("down")

    first = Handler(client)
    worker = _Worker(consumer, first, WorkerPolicy(**{**FAST, "retry_backoff": (5.0, 5.0)}), reset)
    worker.run(halt)
    assert consumer.stats.rewinds == 0 and client.seeks == []
    assert first.seen == uids("A", stop=False)  # the batch read with the rebalance is not handed to the old one


def test_documents_read_in_the_rebalance_batch_are_read_again_as_new(consumer):
    """The batch that came with the rebalance was never handed over: a handler error on it is dead-lettered."""
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)
    rebalance_after(client, "A-e0", then=[stop])
    fresh = Handler(client, fail=lambda name, doc: ValueError("bad") if name == "event" else None, label="fresh")
    worker = _Worker(consumer, Handler(client, label="first"), WorkerPolicy(once=True, on_error="deadletter", **FAST),
                     lambda: fresh)
    worker.run()
    assert fresh.seen == [("start", "A"), ("descriptor", "A-d"), ("stop", "A-s")]
    assert consumer.stats.deadlettered == 1


# --- until_idle and run_worker -----------------------------------------------------------------------

def test_until_idle_stops_a_worker_with_nothing_to_read(consumer, monkeypatch):
    from tomobluesky.transport import _worker

    clock = iter(range(1000, 10**6))
    monkeypatch.setattr(_worker.time, "monotonic", lambda: float(next(clock)))
    consumer.assigned_at = 0.0
    _Worker(consumer, Handler(), WorkerPolicy(until_idle=20, **FAST)).run()
    polls = [e for e in consumer._consumer.timeline if e[0] == "consume"]
    assert 3 <= len(polls) <= 12  # the fake clock ticks a few times per pass


def idle_worker(**state):
    class Stub:
        stats = None
        session_timeout = 45.0
        assigned_at = None
        unassigned_since = 0.0
        assignment = set()

    stub = Stub()
    for k, v in state.items():
        setattr(stub, k, v)
    stub.stats = object()
    return _Worker(stub, None, WorkerPolicy(retry_backoff=None, run_timeout=None))


def test_idle_counts_from_the_later_of_start_and_losing_the_partitions():
    w = idle_worker(unassigned_since=10.0)
    assert w._idle(59.9, last_message=0.0, started=0.0, until_idle=5) is False
    assert w._idle(60.0, last_message=0.0, started=0.0, until_idle=5) is True
    assert w._idle(60.0, last_message=0.0, started=20.0, until_idle=5) is False
    assert w._idle(70.0, last_message=0.0, started=20.0, until_idle=5) is True


class Assigned(Client):
    """A fake consumer given partition 0 of its first topic at subscribe, holding run A; ``made`` lists
    the clients built (reset by :func:`_assigned_clients`)."""

    made: list = []

    def __init__(self, settings):
        super().__init__(settings)
        self.made.append(self)

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        super().subscribe(topics, on_assign, on_revoke, on_lost)
        self.assign_now((topics[0], 0))
        docs, stop = run_docs("A")
        for name, doc in (*docs, stop):
            self.logs[(topics[0], 0)].append((None, pack(name, doc)))


def _assigned_clients(monkeypatch) -> list:
    """Make confluent_kafka.Consumer an :class:`Assigned` for this test; returns the list of clients made."""
    import confluent_kafka

    monkeypatch.setattr(Assigned, "made", [])
    monkeypatch.setattr(confluent_kafka, "Consumer", Assigned)
    return Assigned.made


def test_run_worker_hands_documents_over_and_closes_the_consumer(kafka, monkeypatch, caplog):
    made = _assigned_clients(monkeypatch)
    handler = Handler()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        stats = run_worker(KafkaConfig(bootstrap="broker:9092", topic=T), handler, group_id="g",
                           policy=WorkerPolicy(once=True, **FAST), topics=["other.topic"])
    (client,) = made
    assert handler.seen == uids("A") and stats.handled == 4 and stats.runs_finished == 1
    assert client.topics == ["other.topic"] and client.settings["group.id"] == "g" and client.closed
    assert client.commits[-1] == [("other.topic", 0, 4)]
    (start,) = records(caplog, "worker-start")
    assert start.getMessage() == "worker started" and start.group == "g" and start.topics == ["other.topic"]
    assert start.bootstrap == "broker:9092" and start.run_timeout_s is None
    (end,) = records(caplog, "worker-stop")
    assert end.getMessage() == "worker stopped"
    assert (end.handled, end.skipped, end.deadlettered, end.runs_finished, end.outages, end.recoveries,
            end.runs_timed_out, end.late_stops, end.reasons) == (4, 0, 0, 1, 0, 0, 0, 0, {})


def test_run_worker_defaults_and_an_interrupt(kafka, monkeypatch, caplog):
    made = _assigned_clients(monkeypatch)

    def handle(name, doc):
        if name == "stop":
            raise KeyboardInterrupt
    with caplog.at_level(logging.INFO, logger=LOGGER):
        stats = run_worker(KafkaConfig(bootstrap="broker:9092", topic=T), handle, group_id="g")
    (client,) = made
    assert client.topics == [T] and client.closed and stats.handled == 3
    assert [r.getMessage() for r in records(caplog, "interrupted")] == ["interrupted"]
    (start,) = records(caplog, "worker-start")
    assert start.run_timeout_s == 3600.0
    # the default policy validates documents: a schema-invalid start is dead-lettered, not handed over
    made.clear()

    class Invalid(Assigned):
        def subscribe(self, topics, on_assign, on_revoke, on_lost):
            Client.subscribe(self, topics, on_assign, on_revoke, on_lost)
            self.assign_now((topics[0], 0))
            self.logs[(topics[0], 0)].append((None, pack("start", {"uid": "u"})))

    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", Invalid)
    stats = run_worker(KafkaConfig(bootstrap="broker:9092", topic=T), handle, group_id="g",
                       policy=WorkerPolicy(once=True))
    assert stats.deadlettered == 1 and stats.handled == 0
    stats = run_worker(KafkaConfig(bootstrap="broker:9092", topic=T), handle, group_id="g",
                       policy=WorkerPolicy(once=True, validate=False))
    assert stats.deadlettered == 0 and stats.handled == 1


# --- durations, on a clock of the test's own ------------------------------------------------------

class Clock:
    """time for the worker module only: every reading is 0.123 s after the last (the consumer keeps real time)."""

    def __init__(self):
        self.now = time.monotonic() + 10.0

    def monotonic(self):
        self.now += 0.123
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from tomobluesky.transport import _worker

    fake = Clock()
    monkeypatch.setattr(_worker, "time", fake)
    return fake


def test_outage_durations_in_the_log(consumer, clock, caplog):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _Worker(consumer, outage_handler(client, 2), WorkerPolicy(once=True, **FAST)).run()
    (retry,) = records(caplog, "outage-retry")
    (back,) = records(caplog, "recovered")
    for rec in (retry, back):
        assert isinstance(rec.outage_s, float) and 0.1 < rec.outage_s < 10 and rec.outage_s == round(rec.outage_s, 1)
    assert retry.getMessage() == f"still unreachable after {retry.outage_s:.1f} s (ConnectionError); retrying in 0.0 s"
    assert back.getMessage() == f"the service is back after {back.outage_s:.1f} s; the worker goes on"
    assert back.outage_s > retry.outage_s


def test_until_idle_after_documents_and_a_rebalance(consumer, clock):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)
    fresh = Handler(client, label="fresh")
    rebalance_after(client, "A-e0", then=[stop])
    first = Handler(client, label="first")
    _Worker(consumer, first, WorkerPolicy(until_idle=2.0, **FAST), lambda: fresh).run()
    assert first.seen == uids("A", stop=False) and fresh.seen == uids("A") and consumer.stats.rewinds == 1
    polls = [e for e in client.timeline if e[0] == "consume"]
    assert len(polls) < 60  # stopped by itself once idle for 2 s of the worker's clock


def test_counters_add_to_what_they_were(consumer):
    consumer.stats.rewinds, consumer.stats.runs_timed_out = 5, 3
    client = consumer._consumer
    put(consumer, *run_docs("A")[0], *run_docs("B")[0])
    rebalance_after(client, "B-e0")
    worker = _Worker(consumer, Handler(client), WorkerPolicy(once=True, **FAST), lambda: Handler(client))
    worker.run()
    assert consumer.stats.rewinds == 6
    assert worker.close_silent_runs(1e12, None) is True and consumer.stats.runs_timed_out == 3  # no run_timeout
    worker.run_timeout = 1.0
    assert worker.close_silent_runs(1e12, None) is True and consumer.stats.runs_timed_out == 5


def test_a_stop_during_the_backoff_of_a_silent_runs_close_ends_the_worker(consumer):
    put(consumer, *run_docs("A")[0])
    consumer.poll(timeout=0)
    halt = threading.Event()

    def handle(name, doc):
        halt.set()
        raise ConnectionError("down")

    worker = _Worker(consumer, handle, WorkerPolicy(**{**FAST, "run_timeout": 1.0, "retry_backoff": (1.0, 1.0)}))
    assert worker.close_silent_runs(1e12, halt) is False
    assert consumer.stats.rewinds == 0 and consumer._consumer.seeks == []


def test_run_worker_passes_reset_and_stop_on(kafka, monkeypatch):
    _assigned_clients(monkeypatch)
    config = KafkaConfig(bootstrap="broker:9092", topic=T)
    halt = threading.Event()
    halt.set()
    assert run_worker(config, Handler(), group_id="g", policy=WorkerPolicy(once=True), stop=halt).handled == 0
    fresh = Handler()
    stats = run_worker(config, outage_handler(None, 1), group_id="g", policy=WorkerPolicy(once=True, **FAST),
                       reset=lambda: fresh)
    assert fresh.seen == uids("A") and stats.rewinds == 1 and stats.recoveries == 1


def test_the_durability_rule_sees_the_document(consumer):
    docs, _ = run_docs("A", n_events=3)
    put(consumer, *docs)  # 0-4
    policy = WorkerPolicy(once=True, durable=lambda name, doc: doc.get("seq_num") == 2, **FAST)
    _Worker(consumer, Handler(), policy).run()
    assert consumer._consumer.commits[-1] == [(T, 0, 4)]  # through the event with seq_num 2 (offset 3)


def test_commits_wait_for_the_commit_interval_on_the_workers_clock(consumer, monkeypatch):
    from tomobluesky.transport import _worker

    ticks = iter(range(1000, 10**6))
    monkeypatch.setattr(_worker, "time", type("T", (), {"monotonic": staticmethod(lambda: float(next(ticks)))}))
    docs_a, stop_a = run_docs("A")
    docs_b, stop_b = run_docs("B")
    put(consumer, *docs_a, stop_a)
    halt = threading.Event()

    def hook(client):
        polls = sum(e[0] == "consume" for e in client.timeline)
        if polls == 3:
            put(consumer, *docs_b, stop_b)
        if polls >= 8:
            halt.set()
    consumer._consumer.hooks.append(hook)
    handler = Handler()
    _Worker(consumer, handler, WorkerPolicy(**{**FAST, "commit_interval": 50})).run(halt)
    assert handler.seen == uids("A") + uids("B")
    assert consumer._consumer.commits == [[(T, 0, 4)]]  # B finished within 50 ticks of the first commit


def test_until_idle_with_no_partition_counts_from_the_start(kafka, clock):
    c = DocumentConsumer(KafkaConfig(bootstrap="broker:9092", topic=T), "group-1")
    c.session_timeout = 1.0
    _Worker(c, Handler(), WorkerPolicy(until_idle=0.5, **FAST)).run()
    polls = [e for e in c._consumer.timeline if e[0] == "consume"]
    assert 2 <= len(polls) <= 10  # 1.5 s of the worker's clock at 0.123 s a reading, a few readings a pass


def test_until_idle_after_losing_a_partition_with_an_unfinished_run(consumer, clock):
    client = consumer._consumer
    client.assign_now((T, 1))
    put(consumer, *run_docs("A")[0], partition=0)

    def hook(c):
        if any(e[0] == "handle" and e[3] == "A-d" for e in c.timeline) and (T, 0) in c.assigned:
            c.on_revoke(c, [TP(T, 0)])  # to another member, for good
            c.assigned.remove((T, 0))
    client.hooks.append(hook)
    fresh = Handler(client, label="fresh")
    _Worker(consumer, Handler(client, label="first"), WorkerPolicy(until_idle=1.0, **FAST), lambda: fresh).run()
    assert consumer.stats.rewinds == 1 and fresh.seen == [] and consumer.assignment == {(T, 1)}


def test_a_stop_during_an_outage_on_a_silent_runs_close_ends_the_loop(consumer):
    put(consumer, *run_docs("A")[0])
    halt = threading.Event()

    def fail(name, doc):
        if name == "stop":
            halt.set()
            return ConnectionError("down")
        return None

    handler = Handler(fail=fail)
    _Worker(consumer, handler, WorkerPolicy(**{**FAST, "run_timeout": 0.05, "retry_backoff": (1.0, 1.0)})).run(halt)
    assert handler.seen == uids("A", stop=False) and consumer.stats.outages == 1 and consumer.stats.rewinds == 0


def test_without_reset_the_batch_of_a_rebalance_is_handed_over_not_dropped(consumer):
    """Without a reset nothing is rewound after a rebalance that took unfinished runs; the batch read with it
    was dropped, so A's stop and all of B never reached the handler (and B would have been closed unseen)."""
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)
    docs_b, stop_b = run_docs("B")
    rebalance_after(client, "A-e0", then=[stop, *docs_b, stop_b])
    handler = Handler(client)
    _Worker(consumer, handler, WorkerPolicy(once=True, **FAST)).run()
    assert handler.seen == uids("A", stop=False) * 2 + [("stop", "A-s")] + uids("B")
    assert consumer.stats.rewinds == 0 and consumer.stats.runs_finished == 2 and consumer.lost_runs is False
    assert client.commits[-1] == [(T, 0, 8)]


def test_documents_after_an_outage_in_the_same_batch_are_dead_lettered_when_they_fail_later(consumer):
    """An outage stops the batch at the descriptor: the event after it was read but never handed over. When
    the event's handler then fails for good, it is dead-lettered, not dropped with its offset committed."""
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)  # one batch: start 0, descriptor 1, event 2, stop 3
    down = {"n": 1}

    def fail(name, doc):
        if name == "descriptor" and down["n"]:
            down["n"] -= 1
            return ConnectionError("catalogue down")
        return ValueError("bad event") if name == "event" else None

    handler = Handler(fail=fail)
    _Worker(consumer, handler, WorkerPolicy(once=True, on_error="deadletter", **FAST)).run()
    assert handler.seen == [("start", "A"), ("start", "A"), ("descriptor", "A-d"), ("stop", "A-s")]
    s = consumer.stats
    assert (s.outages, s.rewinds, s.deadlettered, s.reasons) == (1, 1, 1, {"handler-error": 1})
    event = {**EVENT, "uid": "A-e0", "descriptor": "A-d", "seq_num": 1}
    assert consumer._dlq.produced == [(f"{T}.deadletter", b"A", pack("event", event),
                                       [("reason", b"handler-error"), ("detail", b"ValueError: bad event")])]
    assert consumer._consumer.commits[-1] == [(T, 0, 4)]


def test_a_malformed_message_in_the_rebalance_batch_is_dead_lettered_once(consumer):
    client = consumer._consumer
    docs, stop = run_docs("A")
    put(consumer, *docs)

    def hook(c):  # once A's event is handled: the partition is taken and given back, then two messages come
        if any(e[0] == "handle" and e[3] == "A-e0" for e in c.timeline) and not getattr(c, "rebalanced", False):
            c.rebalanced = True
            c.on_revoke(c, [TP(T, 0)])
            c.position[(T, 0)] = 0
            c.on_assign(c, [TP(T, 0)])
            c.logs[(T, 0)] += [(b"k", b"\xc1"), (None, pack(*stop))]

    client.hooks.append(hook)
    fresh = Handler(client, label="fresh")
    _Worker(consumer, Handler(client, label="first"), WorkerPolicy(once=True, on_error="deadletter", **FAST),
            lambda: fresh).run()
    assert fresh.seen == uids("A") and consumer.stats.rewinds == 1
    assert consumer.stats.deadlettered == 1 and [p[1:3] for p in consumer._dlq.produced] == [(b"k", b"\xc1")]
