"""The consumer's rules without a broker (tomobluesky/transport/_consumer.py): what a malformed message is
dead-lettered for, the per-partition ledger behind the commit rule, the worker's own stop document, and
DocumentConsumer's offsets on a fake in-memory Kafka client (confluent_kafka's Consumer and Producer
replaced by plain classes: the consumer's own code runs unchanged). Written against mutmut's survivors."""

from __future__ import annotations

import time
import uuid

import msgpack
import pytest

from tomobluesky._errors import NO_STOP_PREFIX
from tomobluesky.transport._codec import pack
from tomobluesky.transport._config import KafkaConfig
from tomobluesky.transport._consumer import DocumentConsumer, no_stop_document
from tomobluesky.transport._decode import Malformed, decode_document
from tomobluesky.transport._ledger import Ledger
from tomobluesky.transport._worker import run_complete


def raw(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def refused(value, **kw) -> tuple[str, str]:
    with pytest.raises(Malformed) as err:
        decode_document(value, **kw)
    m = err.value
    assert str(m) == f"{m.reason}: {m.detail}"
    return m.reason, m.detail


# --- decode_document -------------------------------------------------------------------------------

START = {"uid": "run-A", "time": 1.0}
EVENT = {"uid": "e1", "time": 1.0, "descriptor": "d", "seq_num": 1, "data": {"a": 1}, "timestamps": {"a": 1.0},
         "filled": {}}


def test_valid_documents_come_back_as_they_were():
    assert decode_document(pack("start", START)) == ("start", START)
    assert decode_document(pack("event", EVENT)) == ("event", EVENT)
    assert decode_document(raw(("stop", {"any": "thing"})), validate=False) == ("stop", {"any": "thing"})


def test_malformed_messages_and_their_reasons():
    assert refused(None) == ("empty", "the message has no value")
    assert refused(b"\xc1") == ("undecodable", "undecodable msgpack: FormatError: ")
    assert refused(raw({"a": 1})) == ("not-a-pair", "expected [name, document], got dict")
    assert refused(raw("start")) == ("not-a-pair", "expected [name, document], got str")
    assert refused(raw(["start"])) == ("not-a-pair", "expected [name, document], got list of length 1")
    assert refused(raw(["start", START, 3])) == ("not-a-pair", "expected [name, document], got list of length 3")
    assert refused(raw([5, START])) == ("unknown-name", "unknown document name 5")
    assert refused(raw(["bulk_events", START])) == ("unknown-name", "unknown document name 'bulk_events'")
    assert refused(raw(["x" * 100, START])) == ("unknown-name", "unknown document name '" + "x" * 79)
    assert refused(raw(["start", [1]])) == ("not-a-document", "the start document is a list, not a mapping")


def test_every_bluesky_document_name_is_known():
    for name in ("start", "descriptor", "event", "event_page", "stop", "resource", "datum", "datum_page",
                 "stream_resource", "stream_datum"):
        assert decode_document(raw([name, {}]), validate=False) == (name, {})


def test_schema_invalid_documents_say_where():
    assert refused(raw(["start", {"uid": "u"}])) == (
        "schema-invalid", "start at (top level): 'time' is a required property")
    assert refused(raw(["event", {**EVENT, "seq_num": "one"}])) == (
        "schema-invalid", "event at seq_num: 'one' is not of type 'integer'")
    assert refused(raw(["event", {**EVENT, "filled": {"a": 5}}])) == (
        "schema-invalid", "event at filled/a: 5 is not valid under any of the given schemas")
    # the validator's message is cut at 300 characters
    reason, detail = refused(raw(["start", {"uid": "u", "time": "t" * 1000}]))
    assert reason == "schema-invalid"
    assert detail == ("start at time: " + f"{'t' * 1000!r} is not of type 'number'")[: len("start at time: ") + 300]
    # without validation the same documents pass
    assert decode_document(raw(["start", {"uid": "u"}]), validate=False) == ("start", {"uid": "u"})


def test_a_validator_that_trips_is_a_schema_invalid_document():
    # an integer key: jsonschema's patternProperties cannot match it and raises TypeError
    assert refused(pack("start", {"uid": "u", "time": 1.0, 5: 1})) == (
        "schema-invalid", "start: TypeError: expected string or bytes-like object, got 'int'")


def test_malformed_keeps_reason_and_detail():
    m = Malformed("why", "what")
    assert (m.reason, m.detail, str(m), m.args) == ("why", "what", "why: what", ("why: what",))
    assert isinstance(m, ValueError)


# --- the worker's stop, the default durability rule -----------------------------------------------

def test_the_workers_stop_document():
    before = time.time()
    doc = no_stop_document("run-A", 3600.0)
    after = time.time()
    assert set(doc) == {"uid", "run_start", "time", "exit_status", "reason", "num_events"}
    assert str(uuid.UUID(doc["uid"])) == doc["uid"]
    assert doc["run_start"] == "run-A" and doc["exit_status"] == "fail" and doc["num_events"] == {}
    assert before <= doc["time"] <= after
    assert doc["reason"] == f"{NO_STOP_PREFIX} within 3600 s; closed by the worker"
    assert no_stop_document("r", 0.25)["reason"] == f"{NO_STOP_PREFIX} within 0.25 s; closed by the worker"


def test_a_run_is_durable_at_its_stop_only():
    assert run_complete("stop", {}) is True
    for name in ("start", "descriptor", "event", "event_page", "resource", "datum"):
        assert run_complete(name, {}) is False


# --- the ledger ------------------------------------------------------------------------------------

def test_a_new_ledger_has_nothing_to_commit():
    led = Ledger()
    assert led.committable() is None and led.next_offset is None
    assert not led.entries and led.by_run == {} and led.started == set() and led.last_seen == {}


def test_add_records_open_and_done_entries():
    led = Ledger()
    entry = led.add(7, "A")
    assert entry == [7, "A", False] and list(led.entries) == [[7, "A", False]]
    assert led.by_run == {"A": [[7, "A", False]]} and led.next_offset == 8
    assert led.add(8, None, done=True) == [8, None, True]
    assert led.by_run == {"A": [[7, "A", False]]} and led.next_offset == 9  # a done entry waits for no run
    assert led.committable() == 7


def test_finishing_a_run_through_an_offset():
    led = Ledger()
    for offset in range(4):
        led.add(offset, "A")
    led.add(4, "B")
    led.finish_run("A", through=1)       # inclusive: offsets 0 and 1 are done
    assert [e[2] for e in led.entries] == [True, True, False, False, False]
    assert [e[0] for e in led.by_run["A"]] == [2, 3]
    assert led.committable() == 2
    led.finish_run("A", through=3)
    assert "A" not in led.by_run and led.committable() == 4
    led.finish_run("nobody", through=10)  # unknown runs are nothing to do
    led.finish_run("B", through=4)
    assert led.by_run == {} and led.committable() == 5 and not led.entries


def test_finish_run_through_an_earlier_offset_changes_nothing():
    led = Ledger()
    led.add(5, "A")
    led.add(6, "A")
    led.finish_run("A", through=4)
    assert led.committable() == 5 and [e[0] for e in led.by_run["A"]] == [5, 6]
    led.finish_run("A", through=5)
    assert led.committable() == 6 and [e[0] for e in led.by_run["A"]] == [6]


# --- DocumentConsumer on a fake Kafka client ------------------------------------------------------

class TP:
    def __init__(self, topic, partition, offset=-1001):
        self.topic, self.partition, self.offset = topic, partition, offset


class Err:
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def __str__(self):
        return f"error {self._code}"


class Msg:
    def __init__(self, topic, partition, offset, value=None, key=None, error=None):
        self._t, self._p, self._o, self._v, self._k, self._e = topic, partition, offset, value, key, error

    def topic(self): return self._t
    def partition(self): return self._p
    def offset(self): return self._o
    def value(self): return self._v
    def key(self): return self._k
    def error(self): return self._e


class FakeConsumer:
    """confluent_kafka.Consumer as far as DocumentConsumer uses it: partitions are lists of values."""

    def __init__(self, settings):
        self.settings = settings
        self.logs: dict[tuple[str, int], list] = {}
        self.position: dict[tuple[str, int], int] = {}
        self.assigned: list[tuple[str, int]] = []
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[list[tuple[str, int, int]]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.closed = False
        self.calls: list[tuple] = []
        self.inject: list[Msg] = []  # error messages returned before anything else
        self.eof_at: dict[tuple[str, int], int] = {}

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self.topics, self.on_assign, self.on_revoke, self.on_lost = topics, on_assign, on_revoke, on_lost

    def assign_now(self, *tps):
        self.assigned += tps
        for tp in tps:
            self.logs.setdefault(tp, [])
            self.position.setdefault(tp, 0)
        self.on_assign(self, [TP(*tp) for tp in tps])

    def consume(self, num_messages=1, timeout=-1):
        assert isinstance(num_messages, int) and isinstance(timeout, (int, float)), (num_messages, timeout)
        self.calls.append((num_messages, timeout))
        out, self.inject = self.inject[:num_messages], self.inject[num_messages:]
        for tp in self.assigned:
            if tp in self.paused:
                continue
            log = self.logs[tp]
            while self.position[tp] < len(log) and len(out) < num_messages:
                key, value = log[self.position[tp]]
                out.append(Msg(tp[0], tp[1], self.position[tp], value, key))
                self.position[tp] += 1
            if self.position[tp] == len(log) and self.eof_at.get(tp) != len(log) and len(out) < num_messages:
                self.eof_at[tp] = len(log)  # enable.partition.eof: one EOF message per end reached
                out.append(Msg(tp[0], tp[1], len(log), error=Err(-191)))
        return out

    def assignment(self):
        return [TP(*tp) for tp in self.assigned]

    def pause(self, partitions):
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions):
        self.paused -= {(p.topic, p.partition) for p in partitions}

    def seek(self, tp):
        self.seeks.append((tp.topic, tp.partition, tp.offset))
        self.position[(tp.topic, tp.partition)] = tp.offset
        self.eof_at.pop((tp.topic, tp.partition), None)

    def commit(self, offsets, asynchronous=True):
        assert asynchronous is False
        if getattr(self, "broken", False):
            raise RuntimeError("broker down")
        self.commits.append([(t.topic, t.partition, t.offset) for t in offsets])

    def close(self):
        self.closed = True


class FakeProducer:
    """confluent_kafka.Producer: ``pending`` messages stay queued (the broker unreachable), ``fail`` makes
    the next deliveries fail, ``full`` makes the next produce() raise BufferError."""

    def __init__(self, settings):
        self.settings = settings
        self.produced = []
        self.pending = 0
        self.fail = False
        self.full = False
        self.flushes = []
        self.polls = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        if self.full:
            self.full = False
            raise BufferError("queue full")
        self.produced.append((topic, key, value, headers))
        on_delivery("delivery failed" if self.fail else None, None)

    def poll(self, timeout):
        self.polls.append(timeout)
        return 0

    def flush(self, timeout):
        self.flushes.append(timeout)
        return self.pending

    def __len__(self):
        return self.pending


T = "tomo.bluesky.runengine.documents"


@pytest.fixture
def consumer(monkeypatch):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    c = DocumentConsumer(KafkaConfig(bootstrap="broker:9092", topic=T), "group-1")
    c._consumer.assign_now((T, 0))
    return c


def put(c, *docs, partition=0):
    for name, doc in docs:
        c._consumer.logs[(T, partition)].append((None, pack(name, doc) if isinstance(doc, dict) else doc))


def run_docs(run, n_events=1):
    docs = [("start", {"uid": run, "time": 1.0}),
            ("descriptor", {"uid": f"{run}-d", "run_start": run, "time": 1.0, "data_keys": {}})]
    docs += [("event", {**EVENT, "uid": f"{run}-e{i}", "descriptor": f"{run}-d", "seq_num": i + 1})
             for i in range(n_events)]
    stop = ("stop", {"uid": f"{run}-s", "run_start": run, "time": 2.0, "exit_status": "success"})
    return docs, stop


def test_the_consumer_settings(consumer):
    s = consumer._consumer.settings
    assert {k: v for k, v in s.items() if k != "logger"} == {
        "bootstrap.servers": "broker:9092", "group.id": "group-1", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
        "allow.auto.create.topics": True, "topic.metadata.refresh.interval.ms": 5000,
        "reconnect.backoff.max.ms": 1000}
    assert s["logger"].name == "tomobluesky.transport.librdkafka"
    assert consumer.topics == [T] and consumer._consumer.topics == [T]
    assert consumer.session_timeout == 45.0


def test_offsets_are_committed_only_past_finished_runs(consumer):
    docs_a, stop_a = run_docs("A")
    docs_b, stop_b = run_docs("B")
    put(consumer, *docs_a, *docs_b, stop_a)  # offsets 0-2 A, 3-5 B, 6 A's stop
    got = consumer.poll(timeout=0)
    assert [(d.name, d.run, d.offset) for d in got] == [
        ("start", "A", 0), ("descriptor", "A", 1), ("event", "A", 2), ("start", "B", 3), ("descriptor", "B", 4),
        ("event", "B", 5), ("stop", "A", 6)]
    assert all(d.topic == T and d.partition == 0 and not d.synthetic for d in got)
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 0)]
    assert consumer.commit() == 0  # the same offset is not committed twice
    consumer.finish(got[-1])  # A's stop handled and durable
    assert consumer.ledgers[(T, 0)].started == {"B"} and "A" not in consumer.ledgers[(T, 0)].last_seen
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 3)]
    put(consumer, stop_b)
    (stop,) = consumer.poll(timeout=0)
    consumer.finish(stop)
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 8)]
    assert consumer.stats.committed == 3


def test_finishing_a_document_that_is_not_the_stop_keeps_the_run_open(consumer):
    docs, _ = run_docs("A")
    put(consumer, *docs)
    got = consumer.poll(timeout=0)
    consumer.finish(got[1])  # a handler that makes the run durable through the descriptor
    led = consumer.ledgers[(T, 0)]
    assert led.started == {"A"} and "A" in led.last_seen
    assert led.committable() == 2
    consumer.finish(type(got[0])("stop", {}, "A", T, 5, 0))  # a partition not assigned: nothing happens
    assert led.committable() == 2


def test_documents_of_runs_never_started_here_are_skipped(consumer):
    docs, stop = run_docs("A")
    put(consumer, *docs[1:], stop)  # its start lies behind the committed offset
    assert consumer.poll(timeout=0) == []
    assert consumer.stats.skipped == 3
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 3)]


def test_malformed_messages_are_dead_lettered_with_their_origin(consumer):
    put(consumer, ("start", b"\xc1"))
    consumer._consumer.logs[(T, 0)][0] = (b"key-1", b"\xc1")
    docs, _ = run_docs("A")
    put(consumer, docs[0], ("x", raw(["start", [1]])))
    got = consumer.poll(timeout=0)
    assert [d.offset for d in got] == [1]
    assert consumer.stats.deadlettered == 2
    assert consumer.stats.reasons == {"undecodable": 1, "not-a-document": 1}
    produced = consumer._dlq.produced
    assert [p[:3] for p in produced] == [(f"{T}.deadletter", b"key-1", b"\xc1"),
                                         (f"{T}.deadletter", None, raw(["start", [1]]))]
    assert produced[0][3] == [("reason", b"undecodable"), ("detail", b"undecodable msgpack: FormatError: "),
                              ("source-topic", T.encode()), ("source-partition", b"0"), ("source-offset", b"0")]
    assert produced[1][3][-1] == ("source-offset", b"2")
    # dead letters count as done: the run that started at 1 holds the commit
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 1)]


def test_the_dead_letter_producer_settings(consumer):
    s = consumer._dlq.settings
    assert {k: v for k, v in s.items() if k != "logger"} == {
        "bootstrap.servers": "broker:9092", "acks": "all", "enable.idempotence": True, "linger.ms": 5,
        "message.max.bytes": 1_000_000 + 65536}
    assert s["logger"].name == "tomobluesky.transport.librdkafka"


def test_a_dead_letter_detail_is_cut_at_1000_bytes(consumer):
    consumer.deadletter_message(T, b"k", b"v", "handler-error", "x" * 5000)
    assert consumer._dlq.produced == [(f"{T}.deadletter", b"k", b"v",
                                       [("reason", b"handler-error"), ("detail", b"x" * 1000)])]


def test_silent_runs_get_the_workers_stop_and_stay_closed(consumer):
    docs_a, stop_a = run_docs("A", n_events=2)
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, *docs_b)
    consumer.poll(timeout=0)
    led = consumer.ledgers[(T, 0)]
    assert set(led.last_seen) == {"A", "B"}
    led.last_seen.update(A=100.0, B=200.0)  # when their latest documents were read
    assert consumer.silent_runs(10.0, 109.99) == []
    (d,) = consumer.silent_runs(10.0, 110.0)
    assert d.run == "A" and d.name == "stop" and d.synthetic and d.topic == T and d.partition == 0
    assert d.offset == 6  # the last offset read: closing A makes everything read so far of A committable
    assert d.doc["run_start"] == "A" and d.doc["reason"] == f"{NO_STOP_PREFIX} within 10 s; closed by the worker"
    both = consumer.silent_runs(10.0, 300.0)
    assert sorted(x.run for x in both) == ["A", "B"]
    consumer.close_run(d)
    assert list(consumer.closed) == ["A"] and led.started == {"B"} and "A" not in led.last_seen
    assert [x.run for x in consumer.silent_runs(10.0, 300.0)] == ["B"]
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 4)]
    # A's late stop is skipped and counted, and leaves the commit where it was
    put(consumer, stop_a)
    assert consumer.poll(timeout=0) == []
    assert consumer.stats.late_stops == 1 and consumer.stats.skipped == 1
    assert consumer.commit() == 0
    assert led.committable() == 4


def test_a_rewind_reads_unfinished_runs_again_from_their_start(consumer):
    docs_a, stop_a = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, stop_a, *docs_b, ("x", b"\xc1"))
    got = consumer.poll(timeout=0)
    consumer.finish(got[3])  # A finished
    assert consumer.stats.deadlettered == 1
    consumer.pause()
    assert consumer._consumer.paused == {(T, 0)}
    consumer.rewind()
    assert consumer._consumer.paused == set()
    assert consumer._consumer.seeks == [(T, 0, 4)] and consumer._consumer.commits[-1] == [(T, 0, 4)]
    again = consumer.poll(timeout=0)
    assert [(d.name, d.run, d.offset) for d in again] == [("start", "B", 4), ("descriptor", "B", 5),
                                                          ("event", "B", 6)]
    assert all(consumer.replayed(d) for d in again)
    assert consumer.stats.deadlettered == 1 and len(consumer._dlq.produced) == 1  # not dead-lettered twice
    put(consumer, ("event", {**EVENT, "uid": "B-e9", "descriptor": "B-d", "seq_num": 9}))
    (new,) = consumer.poll(timeout=0)
    assert new.offset == 8 and not consumer.replayed(new)


def test_no_run_is_closed_while_its_partition_is_being_read_again(consumer):
    consumer._consumer.assign_now((T, 1))
    assert consumer.silent_runs(10.0, 1e9) == []  # nothing read yet
    docs_a, _ = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, partition=0)
    put(consumer, *docs_b, partition=1)
    assert len(consumer.poll(timeout=0)) == 6
    for tp in ((T, 0), (T, 1)):
        consumer.ledgers[tp].last_seen = {run: 100.0 for run in consumer.ledgers[tp].last_seen}
    consumer.rewind()
    assert sorted(consumer._consumer.seeks) == [(T, 0, 0), (T, 1, 0)]
    assert consumer.silent_runs(10.0, 1e9) == []  # fresh ledgers, nothing re-read yet
    consumer._consumer.paused.add((T, 0))
    assert [d.run for d in consumer.poll(timeout=0)] == ["B"] * 3  # partition 1 read again to where it was
    consumer._consumer.paused.clear()
    assert [d.offset for d in consumer.poll(timeout=0, max_messages=2)] == [0, 1]  # partition 0: not yet
    # the rewind does not make a run look fresh: B, silent since 100, is closed; A's rest may be just behind
    assert [(d.run, d.partition, d.offset) for d in consumer.silent_runs(10.0, 1e9)] == [("B", 1, 2)]
    assert [d.run for d in consumer.silent_runs(10.0, 110.0)] == ["B"]  # silent since 100, not since the re-read
    assert [d.offset for d in consumer.poll(timeout=0)] == [2]
    assert sorted((d.run, d.partition) for d in consumer.silent_runs(10.0, 1e9)) == [("A", 0), ("B", 1)]
    assert consumer.silent_runs(10.0, 109.0) == []


def test_replayed_is_false_before_any_rewind_and_for_the_workers_own_stops(consumer):
    docs, _ = run_docs("A")
    put(consumer, *docs)
    got = consumer.poll(timeout=0)
    assert got[0].offset == 0 and not any(consumer.replayed(d) for d in got)
    consumer.rewind()
    again = consumer.poll(timeout=0)
    assert [d.offset for d in again] == [0, 1, 2] and all(consumer.replayed(d) for d in again)
    (stop,) = consumer.silent_runs(10.0, 1e12)
    assert stop.synthetic and stop.offset == 2 and not consumer.replayed(stop)


def test_a_second_rewind_remembers_how_far_the_first_had_read(consumer):
    docs, _ = run_docs("A", n_events=3)
    put(consumer, *docs)  # offsets 0-4
    assert len(consumer.poll(timeout=0)) == 5
    consumer.rewind()
    assert [d.offset for d in consumer.poll(timeout=0, max_messages=2)] == [0, 1]
    consumer.rewind()  # an outage again, before the first re-read got back to offset 5
    again = consumer.poll(timeout=0)
    assert [d.offset for d in again] == [0, 1, 2, 3, 4]
    assert all(consumer.replayed(d) for d in again)


def test_a_rewind_goes_on_when_the_commit_before_it_fails(consumer, caplog):
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    got = consumer.poll(timeout=0)
    consumer.finish(got[-1])
    consumer._consumer.broken = True
    with caplog.at_level("ERROR", logger="tomobluesky.transport.worker"):
        consumer.rewind()
    assert [r.getMessage() for r in caplog.records] == ["commit before the rewind failed"]
    assert consumer._consumer.seeks == [(T, 0, 4)] and consumer._consumer.commits == []


def test_after_a_rewind_documents_of_finished_runs_are_not_given_to_another_run(consumer):
    docs_a, stop_a = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, docs_a[0], docs_a[1], docs_b[0], docs_b[1], docs_a[2], stop_a)  # A's event and stop after B's start
    got = consumer.poll(timeout=0)
    assert [(d.name, d.run) for d in got] == [("start", "A"), ("descriptor", "A"), ("start", "B"),
                                              ("descriptor", "B"), ("event", "A"), ("stop", "A")]
    consumer.finish(got[-1])
    consumer.rewind()  # back to offset 2, B's start: A's descriptor is not read again
    assert consumer._consumer.seeks == [(T, 0, 2)]
    again = consumer.poll(timeout=0)
    assert [(d.name, d.run, d.offset) for d in again] == [("start", "B", 2), ("descriptor", "B", 3)]
    assert consumer.stats.skipped == 2


def test_closing_a_run_forgets_its_links_and_old_closed_runs(consumer, monkeypatch):
    from tomobluesky.transport import _consumer

    docs, _ = run_docs("A")
    put(consumer, *docs)
    consumer.poll(timeout=0)
    (stop,) = consumer.silent_runs(1.0, 1e12)
    consumer.close_run(stop)
    assert consumer._keys.key("event", {"descriptor": "A-d"}) is None  # the run's links are gone
    monkeypatch.setattr(_consumer, "_CLOSED_MEMORY", 3)
    for run in "BCD":
        consumer.close_run(type(stop)("stop", {}, run, T, 0, 2, synthetic=True))
    assert list(consumer.closed) == ["B", "C", "D"]  # at most _CLOSED_MEMORY, the oldest forgotten
    consumer.close_run(type(stop)("stop", {}, "E", T, 0, 2, synthetic=True))
    assert list(consumer.closed) == ["C", "D", "E"]


def test_poll_waits_for_the_first_message_only_then_takes_what_is_there(consumer):
    docs, _ = run_docs("A", n_events=8)  # 10 documents
    put(consumer, *docs)
    assert [d.offset for d in consumer.poll(timeout=0.3, max_messages=4)] == [0, 1, 2, 3]
    assert consumer._consumer.calls == [(1, 0.3), (3, 0)]
    consumer._consumer.calls.clear()
    before = time.monotonic()
    assert [d.offset for d in consumer.poll()] == [4, 5, 6, 7, 8, 9]
    after = time.monotonic()
    assert consumer._consumer.calls == [(1, 0.5), (499, 0)]
    assert before <= consumer.ledgers[(T, 0)].last_seen["A"] <= after
    consumer._consumer.calls.clear()
    assert consumer.poll(timeout=0) == [] and consumer._consumer.calls == [(1, 0)]  # nothing: no second call


def test_end_of_partition_and_consumer_errors(consumer, caplog):
    consumer._consumer.assign_now((T, 1))
    assert not consumer.caught_up()
    docs, _ = run_docs("A")
    put(consumer, *docs)
    consumer._consumer.inject = [Msg(T, 0, 0, error=Err(3)), Msg(T, 0, 0, error=Err(-195))]  # unknown topic; transport
    with caplog.at_level("WARNING", logger="tomobluesky.transport.worker"):
        got = consumer.poll(timeout=0)
    assert [d.offset for d in got] == [0, 1, 2]
    assert consumer.eof == {(T, 0), (T, 1)} and consumer.caught_up()
    assert consumer.stats.deadlettered == 0 and consumer._dlq.produced == []
    assert [(r.getMessage(), r.event) for r in caplog.records] == [("consumer error: error -195", "consumer-error")]
    put(consumer, ("event", {**EVENT, "uid": "A-e9", "descriptor": "A-d", "seq_num": 9}))
    assert [d.offset for d in consumer.poll(timeout=0)] == [3]
    assert consumer.eof == {(T, 0), (T, 1)}  # read to the end again
    put(consumer, ("event", {**EVENT, "uid": "A-e10", "descriptor": "A-d", "seq_num": 10}))
    consumer._consumer.paused.add((T, 0))
    consumer._consumer.inject = [Msg(T, 0, 4, value=b"x")]  # a message arrives: not at the end any more
    consumer.poll(timeout=0)
    assert consumer.eof == {(T, 1)} and not consumer.caught_up()


def test_nothing_is_committed_past_a_dead_letter_not_yet_delivered(consumer, caplog):
    docs, stop = run_docs("A")
    put(consumer, ("x", b"\xc1"), *docs, stop)
    got = consumer.poll(timeout=0)
    consumer.finish(got[-1])
    dlq = consumer._dlq
    dlq.pending = 2
    with caplog.at_level("DEBUG", logger="tomobluesky.transport.worker"):
        caplog.clear()
        assert consumer.commit() == 0
    assert dlq.flushes == [10] and consumer._consumer.commits == []
    assert [(r.levelname, r.getMessage(), r.event) for r in caplog.records] == [
        ("ERROR", "dead-letter topic not reachable (2 pending, 0 failed); not committing", "commit-skipped")]
    dlq.pending = 0
    with caplog.at_level("DEBUG", logger="tomobluesky.transport.worker"):
        caplog.clear()
        assert consumer.commit() == 1
    assert consumer._consumer.commits == [[(T, 0, 5)]]
    assert [(r.levelname, r.getMessage(), r.event, r.offsets) for r in caplog.records] == [
        ("DEBUG", "committed", "commit", {f"{T}[0]": 5})]


def test_a_failed_dead_letter_delivery_is_sent_again_and_holds_every_commit_until_it_arrives(consumer, caplog):
    """A dead letter whose delivery failed has left the producer's queue: flush() says nothing is pending.
    It must be sent again, and no offset may pass it until it arrives, or the message is lost."""
    dlq = consumer._dlq
    dlq.fail = True
    put(consumer, ("x", b"\xc1"))
    consumer.poll(timeout=0)
    assert [err for err, _ in consumer._dlq_failed] == ["delivery failed"]
    letter = dlq.produced[0]
    caplog.clear()
    with caplog.at_level("ERROR", logger="tomobluesky.transport.worker"):
        assert consumer.commit() == 0 and consumer.commit() == 0  # still failing: sent again, held again
    assert [r.getMessage() for r in caplog.records] == [
        "dead-letter topic not reachable (0 pending, 1 failed); not committing"] * 2
    assert consumer._consumer.commits == [] and dlq.produced == [letter] * 3
    dlq.fail = False  # the dead-letter topic is back
    assert consumer.commit() == 1 and consumer._consumer.commits == [[(T, 0, 1)]]
    assert dlq.produced == [letter] * 4 and consumer._dlq_failed == []
    assert consumer.commit() == 0 and dlq.produced == [letter] * 4  # delivered once is enough


def test_commit_only_the_partitions_asked_for(consumer):
    consumer._consumer.assign_now((T, 1))
    put(consumer, ("x", b"\xc1"), partition=0)
    put(consumer, ("x", b"\xc1"), ("x", b"\xc1"), partition=1)
    consumer.poll(timeout=0)
    assert consumer.commit(partitions=[(T, 9), (T, 1)]) == 1  # (T, 9) is not assigned here
    assert consumer._consumer.commits == [[(T, 1, 2)]]
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 1)]
    assert consumer.stats.committed == 2


def test_a_consumer_without_dead_letters(monkeypatch):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    c = DocumentConsumer(KafkaConfig(bootstrap="b:1", topic=T), "g", deadletter=False)
    assert c._dlq is None
    c._consumer.assign_now((T, 0))
    put(c, ("x", b"\xc1"))
    assert c.poll(timeout=0) == [] and c.stats.deadlettered == 1 and c.stats.reasons == {"undecodable": 1}
    c.deadletter_message(T, b"k", b"v", "handler-error", "boom")  # nowhere to send it: nothing happens
    assert c.commit() == 1 and c._consumer.commits == [[(T, 0, 1)]]


def test_finishing_the_same_stop_twice_is_harmless(consumer):
    docs, stop = run_docs("A")
    put(consumer, *docs, stop)
    got = consumer.poll(timeout=0)
    consumer.finish(got[-1])
    consumer.finish(got[-1])
    assert consumer.ledgers[(T, 0)].committable() == 4


def test_deliveries_carry_the_document_and_skip_revoked_partitions(consumer):
    docs, _ = run_docs("A")
    put(consumer, *docs)
    consumer._consumer.inject = [Msg(T, 7, 0, value=pack(*docs[0]))]  # a partition no longer assigned
    got = consumer.poll(timeout=0)
    assert [(d.name, d.doc, d.offset) for d in got] == [(n, doc, i) for i, (n, doc) in enumerate(docs)]
    assert (T, 7) not in consumer.ledgers and consumer.stats.skipped == 0


def test_schema_checks_follow_the_consumers_validate_setting(consumer, monkeypatch):
    import confluent_kafka

    bad = ("start", {"uid": "A"})  # no time
    put(consumer, bad)
    assert consumer.poll(timeout=0) == [] and consumer.stats.reasons == {"schema-invalid": 1}
    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    lax = DocumentConsumer(KafkaConfig(bootstrap="b:1", topic=T), "g", validate=False)
    lax._consumer.assign_now((T, 0))
    put(lax, bad)
    assert [(d.name, d.doc) for d in lax.poll(timeout=0)] == [bad]


def test_a_malformed_message_first_read_after_a_rewind_is_dead_lettered(consumer):
    docs, _ = run_docs("A")
    put(consumer, *docs)
    consumer.poll(timeout=0)
    consumer.rewind()
    put(consumer, ("x", b"\xc1"))  # offset 3: never read before the rewind
    assert [d.offset for d in consumer.poll(timeout=0)] == [0, 1, 2]
    assert consumer.stats.deadlettered == 1 and len(consumer._dlq.produced) == 1


def test_late_stops_are_counted_once_and_what_follows_is_read(consumer, caplog):
    docs_b, _ = run_docs("B")
    docs_a, stop_a = run_docs("A")
    put(consumer, docs_b[0], *docs_a)  # B open from offset 0, A at 1-3
    consumer.poll(timeout=0)
    (a,) = [d for d in consumer.silent_runs(10.0, 1e12) if d.run == "A"]
    consumer.close_run(a)
    put(consumer, stop_a, docs_b[1])
    with caplog.at_level("WARNING", logger="tomobluesky.transport.worker"):
        caplog.clear()
        got = consumer.poll(timeout=0)
    assert [(d.name, d.run, d.offset) for d in got] == [("descriptor", "B", 5)]  # read past the skipped stop
    assert consumer.stats.late_stops == 1
    (rec,) = caplog.records
    assert rec.getMessage() == "the stop document of run A came after the worker had closed the run; skipped"
    assert (rec.event, rec.run, rec.partition, rec.offset) == ("late-stop", "A", 0, 4)
    consumer.rewind()  # B is unfinished: everything from offset 0 is read again, A's late stop too
    assert [(d.name, d.run) for d in consumer.poll(timeout=0)] == [("start", "B"), ("descriptor", "B")]
    assert consumer.stats.late_stops == 1 and consumer.stats.skipped == 5


def test_a_run_read_again_after_a_rewind_is_silent_from_then_on(consumer):
    """With a durable rule that does not finish runs at their stop, a run finished before the rewind and
    read again stays open: it is timed from the moment it is read again."""
    docs_b, _ = run_docs("B")
    docs_a, stop_a = run_docs("A")
    put(consumer, docs_b[0], *docs_a, stop_a)
    got = consumer.poll(timeout=0)
    consumer.finish(got[-1])  # A finished; B holds the commit at 0
    consumer.rewind()
    before = time.monotonic()
    assert len(consumer.poll(timeout=0)) == 5  # A read again, its stop not finished this time
    after = time.monotonic()
    led = consumer.ledgers[(T, 0)]
    assert led.started == {"A", "B"} and before <= led.last_seen["A"] <= after
    assert sorted(d.run for d in consumer.silent_runs(10.0, after + 10.0)) == ["A", "B"]


def test_assignment_and_revocation(consumer, caplog):
    fake = consumer._consumer
    assert consumer.assignment == {(T, 0)} and consumer.assigned_at is not None
    with caplog.at_level("INFO", logger="tomobluesky.transport.worker"):
        caplog.clear()
        fake.assign_now((T, 1), (T, 2))
    (rec,) = caplog.records
    assert (rec.getMessage(), rec.event, rec.partitions) == ("partitions assigned", "assigned", [f"{T}[1]", f"{T}[2]"])
    assert consumer.assignment == {(T, 0), (T, 1), (T, 2)}
    put(consumer, ("x", b"\xc1"), partition=1)
    put(consumer, ("x", b"\xc1"), partition=2)
    consumer.poll(timeout=0)
    assert {(T, 1), (T, 2)} <= consumer.eof
    before = time.monotonic()
    with caplog.at_level("INFO", logger="tomobluesky.transport.worker"):
        caplog.clear()
        fake.on_revoke(fake, [TP(T, 1)])  # what is finished is committed before the partition goes
    assert fake.commits == [[(T, 1, 1)]]
    (rec,) = caplog.records
    assert (rec.getMessage(), rec.event, rec.partitions) == ("partitions revoked", "revoked", [f"{T}[1]"])
    assert consumer.assignment == {(T, 0), (T, 2)} and (T, 1) not in consumer.eof and (T, 2) in consumer.eof
    assert consumer.unassigned_since < before  # partitions are left
    fake.broken = True
    with caplog.at_level("INFO", logger="tomobluesky.transport.worker"):
        caplog.clear()
        fake.on_revoke(fake, [TP(T, 2)])  # the commit fails: the partition is given up all the same
    assert [r.getMessage() for r in caplog.records] == ["commit on revoke failed", "partitions revoked"]
    assert caplog.records[0].exc_info is not None
    assert consumer.assignment == {(T, 0)} and (T, 2) not in consumer.eof
    fake.on_lost(fake, [TP(T, 0)])  # lost: nothing is committed
    after = time.monotonic()
    assert consumer.assignment == set() and not consumer.caught_up()
    assert before <= consumer.unassigned_since <= after


def test_close_commits_flushes_and_closes(consumer):
    put(consumer, ("x", b"\xc1"))
    consumer.poll(timeout=0)
    consumer.close()
    assert consumer._consumer.commits == [[(T, 0, 1)]] and consumer._consumer.closed
    assert consumer._dlq.flushes == [10]
    consumer._consumer.closed = False
    put(consumer, ("x", b"\xc1"))
    consumer.poll(timeout=0)
    consumer._consumer.broken = True
    with pytest.raises(RuntimeError):
        consumer.close()  # a failed commit still closes the client
    assert consumer._consumer.closed and consumer._dlq.flushes == [10, 10]


def test_a_full_dead_letter_queue_is_flushed_and_the_message_sent_again(consumer):
    consumer._dlq.full = True
    consumer.deadletter_message(T, b"k", b"v", "handler-error", "boom")
    assert consumer._dlq.flushes == [10] and consumer._dlq.polls == [0]
    assert consumer._dlq.produced == [(f"{T}.deadletter", b"k", b"v", [("reason", b"handler-error"),
                                                                        ("detail", b"boom")])]


def test_the_dead_letter_log_record(consumer, caplog):
    put(consumer, ("x", b"\xc1"))
    with caplog.at_level("WARNING", logger="tomobluesky.transport.worker"):
        consumer.poll(timeout=0)
    (rec,) = caplog.records
    assert rec.getMessage() == f"dead-lettered {T}[0]@0: undecodable: undecodable msgpack: FormatError: "
    assert (rec.event, rec.reason, rec.topic, rec.partition, rec.offset) == ("deadletter", "undecodable", T, 0, 0)


def test_consumer_settings_from_the_config_and_the_caller(monkeypatch):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    config = KafkaConfig(bootstrap="b:1", topic=T, max_message_bytes=5_000_000,
                         consumer_config={"session.timeout.ms": 6000, "security.protocol": "SASL_SSL",
                                          "enable.partition.eof": False})
    c = DocumentConsumer(config, "g", topics=["one", "two"],
                         consumer_config={"sasl.mechanism": "PLAIN", "ssl.ca.location": "/ca", "auto.offset.reset": "latest"})
    s = c._consumer.settings
    assert s["session.timeout.ms"] == 6000 and s["enable.partition.eof"] is False  # the config's own settings win
    assert s["auto.offset.reset"] == "latest" and s["sasl.mechanism"] == "PLAIN"  # and the caller's over those
    assert c.session_timeout == 6.0
    assert c.topics == ["one", "two"] and c._consumer.topics == ["one", "two"]
    assert c.validate is True and c.deadletter is True and c.config is config
    p = c._dlq.settings
    # the dead-letter producer talks to the same broker with the same credentials, and takes big messages
    assert {k: p[k] for k in ("security.protocol", "sasl.mechanism", "ssl.ca.location")} == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "ssl.ca.location": "/ca"}
    assert "session.timeout.ms" not in p and "auto.offset.reset" not in p
    assert p["message.max.bytes"] == 5_000_000 + 65536
    assert (c.ledgers, c.eof, c.closed, c.assigned_at, c._committed, c._replayed, c._dlq_failed) == (
        {}, set(), {}, None, {}, {}, [])
    assert c._keys.strict is True
    assert c.stats == type(c.stats)()


def test_dead_letter_reasons_are_counted_and_long_details_cut(consumer):
    key = "k" * 2000  # the path to the bad value is part of the detail
    put(consumer, ("x", b"\xc1"), ("x", b"\xc1"), ("event", {**EVENT, "filled": {key: 5}}))
    consumer.poll(timeout=0)
    assert consumer.stats.reasons == {"undecodable": 2, "schema-invalid": 1} and consumer.stats.deadlettered == 3
    headers = dict(consumer._dlq.produced[2][3])
    assert headers["reason"] == b"schema-invalid"
    assert headers["detail"] == (f"event at filled/{key}: 5 is not valid under any of the given schemas"
                                  .encode()[:1000])


def test_whatever_comes_late_of_closed_runs_is_skipped_and_committed(consumer):
    docs_a, stop_a = run_docs("A")
    docs_c, stop_c = run_docs("C")
    put(consumer, *docs_a, *docs_c)  # 0-5
    consumer.poll(timeout=0)
    for d in consumer.silent_runs(10.0, 1e12):
        consumer.close_run(d)
    assert sorted(consumer.closed) == ["A", "C"]
    put(consumer, ("event", {**EVENT, "uid": "A-e9", "descriptor": "A-d", "seq_num": 9}),  # A's links are gone
        ("descriptor", {"uid": "C-d2", "run_start": "C", "time": 1.0, "data_keys": {}}), stop_a, stop_c)  # 6-9
    assert consumer.poll(timeout=0) == []
    assert consumer.stats.late_stops == 2 and consumer.stats.skipped == 4
    assert consumer.ledgers[(T, 0)].committable() == 10
    assert consumer.commit() == 1 and consumer._consumer.commits[-1] == [(T, 0, 10)]


def test_a_partition_given_back_and_assigned_again_is_not_read_to_its_end(consumer):
    fake = consumer._consumer
    fake.assign_now((T, 1))
    fake.on_lost(fake, [TP(T, 1)])
    fake.on_lost(fake, [TP(T, 1)])  # a callback for a partition not held is harmless
    fake.on_revoke(fake, [TP(T, 1)])
    fake.assigned.remove((T, 1))
    fake.inject = [Msg(T, 1, 0, error=Err(-191))]  # an end-of-partition event that was already on its way
    consumer.poll(timeout=0)
    fake.assign_now((T, 1))
    put(consumer, ("x", b"\xc1"), partition=1)
    fake.paused.add((T, 1))
    consumer.poll(timeout=0)
    assert (T, 0) in consumer.eof and not consumer.caught_up()  # partition 1 has not been read again yet


# --- survivors of the run at b84d707 (issue 16): the site file named, runs lost to a rebalance --------

def test_a_refused_site_setting_is_reported_with_the_file_it_came_from(monkeypatch, caplog, tmp_path):
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    site_file = tmp_path / "kafka.yml"
    config = KafkaConfig(bootstrap="b:1", topic=T, consumer_config={"enable.auto.commit": "true"}, source=site_file)
    with caplog.at_level("WARNING", logger="tomobluesky.transport.config"):
        c = DocumentConsumer(config, "g")
    (rec,) = caplog.records
    assert rec.getMessage().startswith(f"site consumer settings from {site_file} ignored: enable.auto.commit=true ")
    assert c._consumer.settings["enable.auto.commit"] is False  # ours kept: commits only when durable


def test_only_a_partition_taken_with_an_open_run_flags_lost_runs(consumer):
    fake = consumer._consumer
    fake.assign_now((T, 1), (T, 2), (T, 3))
    assert not consumer.lost_runs  # a new member has lost nothing
    docs_a, stop_a = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, stop_a, partition=1)  # a run read to its stop and finished
    put(consumer, *docs_b[1:], partition=2)  # documents of a run started elsewhere: skipped, nothing open
    put(consumer, *docs_b, partition=3)  # B open
    got = consumer.poll(timeout=0)
    consumer.finish([d for d in got if d.name == "stop"][0])
    fake.on_revoke(fake, [TP(T, 1)])
    fake.on_lost(fake, [TP(T, 2)])
    assert not consumer.lost_runs
    fake.on_revoke(fake, [TP(T, 3)])  # B's start and descriptor are with the handler: B must be read again
    assert consumer.lost_runs
    consumer.lost_runs = False  # what the worker does once it has restarted the runs
    put(consumer, *docs_a[:1], partition=0)
    consumer.poll(timeout=0)
    fake.on_lost(fake, [TP(T, 0)])  # lost, not revoked: the same
    assert consumer.lost_runs


# --- undelivered(): documents read but never handed over before a rewind ------------------------------

def test_documents_read_but_never_handed_over_count_as_new_when_read_again(consumer):
    """What undelivered() is for: the worker read a batch, then had to rewind before handing it over (a
    rebalance took unfinished runs, or an outage stopped the batch). A handler error on one of those documents
    was never dead-lettered, so when read again it must be (replayed() false); what was handed over before
    stays replayed, and a malformed message among them, dead-lettered when first read, is not sent twice."""
    docs, _ = run_docs("A", n_events=3)  # offsets 0-4
    put(consumer, *docs[:3])
    handed = consumer.poll(timeout=0)  # 0-2: handed over
    put(consumer, docs[3], ("x", b"\xc1"), docs[4])  # 3, malformed 4, 5
    batch = consumer.poll(timeout=0)
    assert [d.offset for d in batch] == [3, 5] and not any(consumer.replayed(d) for d in handed + batch)
    assert consumer.stats.deadlettered == 1
    consumer.rewind()
    consumer.undelivered(batch)
    again = consumer.poll(timeout=0)
    assert [(d.offset, consumer.replayed(d)) for d in again] == [(0, True), (1, True), (2, True), (3, False),
                                                                   (5, False)]
    assert consumer.stats.deadlettered == 1 and len(consumer._dlq.produced) == 1


def test_a_document_handed_over_before_an_earlier_rewind_stays_replayed(consumer):
    docs, _ = run_docs("A", n_events=2)  # offsets 0-3
    put(consumer, *docs[:3])
    consumer.poll(timeout=0)  # 0-2 handed over
    consumer.rewind()  # an outage
    put(consumer, docs[3])
    batch = consumer.poll(timeout=0)  # 0-2 read again, 3 for the first time; then a rebalance: none handed over
    assert [(d.offset, consumer.replayed(d)) for d in batch] == [(0, True), (1, True), (2, True), (3, False)]
    consumer.rewind()
    consumer.undelivered(batch)
    assert [(d.offset, consumer.replayed(d)) for d in consumer.poll(timeout=0)] == [
        (0, True), (1, True), (2, True), (3, False)]


def test_undelivered_documents_of_a_partition_no_longer_held_change_nothing(consumer):
    fake = consumer._consumer
    fake.assign_now((T, 1))
    docs_a, _ = run_docs("A")
    docs_b, _ = run_docs("B")
    put(consumer, *docs_a, partition=0)
    put(consumer, *docs_b, partition=1)
    batch = consumer.poll(timeout=0)
    fake.on_lost(fake, [TP(T, 1)])  # taken by the rebalance that came with the batch
    fake.assigned.remove((T, 1))
    consumer.rewind()
    consumer.undelivered(batch)  # B's documents among them: the partition went elsewhere
    assert [(d.partition, d.offset, consumer.replayed(d)) for d in consumer.poll(timeout=0)] == [
        (0, 0, False), (0, 1, False), (0, 2, False)]
    fake.assign_now((T, 1))  # given back later: read from its committed offset, as new
    fake.position[(T, 1)] = 0
    assert [(d.partition, consumer.replayed(d)) for d in consumer.poll(timeout=0)] == [(1, False)] * 3


def test_a_second_rewind_does_not_dead_letter_again_what_the_first_had_read(consumer):
    docs, _ = run_docs("A", n_events=2)  # start 0, descriptor 1, event 2, malformed 3, event 4
    put(consumer, *docs[:3], ("x", b"\xc1"), docs[3])
    consumer.poll(timeout=0)
    consumer.rewind()
    assert [d.offset for d in consumer.poll(timeout=0, max_messages=2)] == [0, 1]
    consumer.rewind()  # an outage again, before the re-read got back to the malformed message
    assert [d.offset for d in consumer.poll(timeout=0)] == [0, 1, 2, 4]
    assert consumer.stats.deadlettered == 1 and len(consumer._dlq.produced) == 1
