"""The consumer side: decode, validate, dead-letter, and commit only what is durable.

:func:`run_worker` is the loop behind every worker process::

    run_worker(load_config(), router, group_id="tomo-live-recon")

Commit rule (whole runs, at least once): the offset of a partition advances past
a message only when the message's run is finished, i.e. when ``durable(name,
doc)`` returned True after ``handle`` succeeded on that run's document (by
default: its stop document), or when the worker closed the run itself after
``run_timeout`` seconds without a document. A restarted (or rebalanced, or
rewound) worker therefore re-reads every unfinished run from its start document,
and may see a finished run again when it lies behind an unfinished one: handlers
must be idempotent per run (complete → skip, partial → replace). A document
whose run's start document this consumer has not seen is skipped: its start lies
behind the committed offset, which only happens when that run was already
finished.

A handler error that says a service is unreachable (:func:`tomobluesky._errors.is_transient`)
is waited out: the worker pauses its partitions, waits with a growing backoff
(still polling, so it keeps its place in the group), rewinds every partition to
its first unfinished offset and feeds the unfinished runs again, from their
start documents, to a fresh handler. Other handler errors follow ``on_error``.

Malformed messages (undecodable msgpack, not a ``[name, doc]`` pair, unknown
document name, schema-invalid per event_model) go to ``<topic>.deadletter``
with the original key and bytes and the reason in the ``reason`` header; the
worker goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import NO_STOP_PREFIX, is_transient
from ._codec import CodecError, pack, unpack
from ._client_settings import consumer_settings
from ._config import KafkaConfig, deadletter_topic
from ._keys import RunKeys

log = logging.getLogger("tomobluesky.transport.worker")

DOCUMENT_NAMES = frozenset({"start", "descriptor", "event", "event_page", "stop", "resource", "datum",
                            "datum_page", "stream_resource", "stream_datum"})


class Malformed(ValueError):
    """A message that is not a valid Bluesky document; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class HandlerError(RuntimeError):
    """``handle(name, doc)`` raised; nothing of that run was committed."""


def decode_document(value: bytes | None, *, validate: bool = True) -> tuple[str, dict]:
    """Message bytes → ``(name, doc)``, or :class:`Malformed` saying why not."""
    if value is None:
        raise Malformed("empty", "the message has no value")
    try:
        obj = unpack(value)
    except CodecError as e:
        raise Malformed("undecodable", str(e)) from None
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise Malformed("not-a-pair", f"expected [name, document], got {type(obj).__name__}"
                        + (f" of length {len(obj)}" if isinstance(obj, (list, tuple)) else ""))
    name, doc = obj
    if not isinstance(name, str) or name not in DOCUMENT_NAMES:
        raise Malformed("unknown-name", f"unknown document name {name!r:.80}")
    if not isinstance(doc, dict):
        raise Malformed("not-a-document", f"the {name} document is a {type(doc).__name__}, not a mapping")
    if validate:
        from event_model import DocumentNames, schema_validators
        from jsonschema.exceptions import ValidationError

        try:
            schema_validators[DocumentNames[name]].validate(doc)
        except ValidationError as e:
            where = "/".join(map(str, e.absolute_path)) or "(top level)"
            raise Malformed("schema-invalid", f"{name} at {where}: {e.message:.300}") from None
        except Exception as e:  # validators can trip on odd types (bytes keys, NaN in odd places)
            raise Malformed("schema-invalid", f"{name}: {type(e).__name__}: {e}"[:300]) from None
    return name, doc


@dataclass
class Delivery:
    name: str
    doc: dict
    run: str | None
    topic: str
    partition: int
    offset: int
    synthetic: bool = False  # a stop document the worker wrote for a run that sent none


def no_stop_document(run: str, timeout: float) -> dict:
    """The stop document a worker hands over for a run silent for ``timeout`` seconds."""
    return {"uid": str(uuid.uuid4()), "run_start": run, "time": time.time(), "exit_status": "fail",
            "reason": f"{NO_STOP_PREFIX} within {timeout:g} s; closed by the worker", "num_events": {}}


@dataclass
class WorkerStats:
    handled: int = 0
    skipped: int = 0
    deadlettered: int = 0
    committed: int = 0
    runs_finished: int = 0
    reasons: dict = field(default_factory=dict)
    outages: int = 0  # a transient handler error paused the worker (one per outage, however long)
    recoveries: int = 0  # the worker got past the document that failed
    rewinds: int = 0  # unfinished runs re-read after a backoff
    runs_timed_out: int = 0  # runs closed with a stop document the worker wrote itself
    late_stops: int = 0  # real stop documents of runs already closed that way (skipped)


class _Ledger:
    """Offsets of one partition not yet committable, grouped by run."""

    def __init__(self):
        self.entries: deque[list] = deque()  # [offset, run, done]
        self.by_run: dict[str | None, list[list]] = {}
        self.next_offset: int | None = None  # last offset read + 1
        self.started: set[str] = set()  # runs open in this partition
        self.last_seen: dict[str, float] = {}  # run → when its latest new document was read (monotonic)

    def add(self, offset: int, run: str | None, done: bool = False) -> list:
        entry = [offset, run, done]
        self.entries.append(entry)
        if not done:
            self.by_run.setdefault(run, []).append(entry)
        self.next_offset = offset + 1
        return entry

    def finish_run(self, run: str | None, through: int) -> None:
        entries = self.by_run.get(run, [])
        keep = []
        for e in entries:
            if e[0] <= through:
                e[2] = True
            else:
                keep.append(e)
        if keep:
            self.by_run[run] = keep
        else:
            self.by_run.pop(run, None)

    def committable(self) -> int | None:
        while self.entries and self.entries[0][2]:
            self.entries.popleft()
        if self.entries:
            return self.entries[0][0]
        return self.next_offset


#: how many runs closed by the run timeout are remembered, so that their late documents are skipped
_CLOSED_MEMORY = 10_000


class DocumentConsumer:
    """A consumer-group member that hands out valid documents and dead-letters the rest.

    Offsets are never committed automatically: call :meth:`finish` when a run's
    effect is durable, then :meth:`commit`."""

    def __init__(self, config: KafkaConfig, group_id: str, *, topics: Iterable[str] | None = None,
                 validate: bool = True, deadletter: bool = True, consumer_config: dict | None = None):
        from confluent_kafka import Consumer, Producer

        self.config = config
        self.topics = list(topics or [config.document_topic])
        self.validate = validate
        self.deadletter = deadletter
        ours = {
            "bootstrap.servers": config.bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "allow.auto.create.topics": True,
            "topic.metadata.refresh.interval.ms": 5000,
            "reconnect.backoff.max.ms": 1000,
            "logger": logging.getLogger("tomobluesky.transport.librdkafka"),
        }
        site = {**dict(config.consumer_config), **(consumer_config or {})}
        settings = consumer_settings(ours, site, config.security_config, source=config.source)
        self._consumer = Consumer(settings)
        # how long the broker waits for a member that vanished without leaving (SIGKILL)
        # before giving its partitions to others (librdkafka's default: 45 s)
        self.session_timeout = float(settings.get("session.timeout.ms", 45_000)) / 1000
        # the dead-letter producer talks to the same broker: it needs the same credentials
        security = {k: v for k, v in settings.items() if k.startswith(("security.", "sasl.", "ssl."))}
        self._dlq = Producer({"bootstrap.servers": config.bootstrap, "acks": "all", "enable.idempotence": True,
                              "linger.ms": 5, "message.max.bytes": max(config.max_message_bytes, 1_000_000) + 65536,
                              "logger": logging.getLogger("tomobluesky.transport.librdkafka"), **security}) \
            if deadletter else None
        self._dlq_failed: list = []
        self.ledgers: dict[tuple[str, int], _Ledger] = {}
        self.eof: set[tuple[str, int]] = set()
        self._keys = RunKeys(strict=True)
        self._committed: dict[tuple[str, int], int] = {}
        self._replayed: dict[tuple[str, int], int] = {}  # offsets below were read once before a rewind
        self.closed: dict[str, None] = {}  # runs closed by the run timeout, oldest first
        self.assigned_at: float | None = None
        self.unassigned_since = time.monotonic()
        self.stats = WorkerStats()
        self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # --- rebalancing ---------------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for p in partitions:
            self.ledgers[(p.topic, p.partition)] = _Ledger()
            self.eof.discard((p.topic, p.partition))
        self.assigned_at = time.monotonic()
        log.info("partitions assigned", extra={"event": "assigned",
                                               "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    def _on_revoke(self, consumer, partitions) -> None:
        try:
            self.commit(partitions=[(p.topic, p.partition) for p in partitions])
        except Exception:
            log.exception("commit on revoke failed")
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer, partitions) -> None:
        for p in partitions:
            self.ledgers.pop((p.topic, p.partition), None)
            self.eof.discard((p.topic, p.partition))
        if not self.ledgers:
            self.unassigned_since = time.monotonic()
        log.info("partitions revoked", extra={"event": "revoked",
                                              "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    @property
    def assignment(self) -> set[tuple[str, int]]:
        return set(self.ledgers)

    def caught_up(self) -> bool:
        """Every assigned partition has been read to its end."""
        return bool(self.ledgers) and self.eof >= set(self.ledgers)

    # --- reading -------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.5, max_messages: int = 500) -> list[Delivery]:
        from confluent_kafka import KafkaError

        out: list[Delivery] = []
        # wait for the first message only, then take what is already there: low latency
        msgs = self._consumer.consume(num_messages=1, timeout=timeout)
        if msgs:
            msgs += self._consumer.consume(num_messages=max_messages - 1, timeout=0)
        now = time.monotonic()
        for msg in msgs:
            tp = (msg.topic(), msg.partition())
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.eof.add(tp)
                elif err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.warning("consumer error: %s", err, extra={"event": "consumer-error"})
                continue
            self.eof.discard(tp)
            ledger = self.ledgers.get(tp)
            if ledger is None:  # a message for a partition just revoked
                continue
            replayed = msg.offset() < self._replayed.get(tp, -1)
            try:
                name, doc = decode_document(msg.value(), validate=self.validate)
            except Malformed as m:
                if not replayed:  # else it was dead-lettered when first read
                    self._deadletter(msg, m)
                ledger.add(msg.offset(), None, done=True)
                continue
            # the run is the start uid the documents link to (not the key: bluesky-kafka's
            # Publisher uses one key for all runs)
            run = self._keys.key(name, doc)
            if run in self.closed:
                self._skip_closed(ledger, msg, name, run, replayed)
                continue
            if name == "start":
                ledger.started.add(run)
            elif run not in ledger.started:
                # its start lies behind the committed offset: that run was finished already
                ledger.add(msg.offset(), run, done=True)
                self.stats.skipped += 1
                continue
            ledger.add(msg.offset(), run)
            if replayed:  # a rewind reads old documents: the run is no less silent for that
                ledger.last_seen.setdefault(run, now)
            else:
                ledger.last_seen[run] = now
            out.append(Delivery(name, doc, run, msg.topic(), msg.partition(), msg.offset()))
        return out

    def _skip_closed(self, ledger: _Ledger, msg, name: str, run: str, replayed: bool) -> None:
        ledger.add(msg.offset(), run, done=True)
        self.stats.skipped += 1
        if name == "stop" and not replayed:
            self.stats.late_stops += 1
            log.warning("the stop document of run %s came after the worker had closed the run; skipped", run,
                        extra={"event": "late-stop", "run": run, "partition": msg.partition(),
                               "offset": msg.offset()})

    def _deadletter(self, msg, m: Malformed) -> None:
        self.stats.deadlettered += 1
        self.stats.reasons[m.reason] = self.stats.reasons.get(m.reason, 0) + 1
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), m,
                    extra={"event": "deadletter", "reason": m.reason, "topic": msg.topic(),
                           "partition": msg.partition(), "offset": msg.offset()})
        if self._dlq is None:
            return
        headers = [("reason", m.reason.encode()), ("detail", m.detail.encode()[:1000]),
                   ("source-topic", msg.topic().encode()), ("source-partition", str(msg.partition()).encode()),
                   ("source-offset", str(msg.offset()).encode())]
        self._produce_dlq(deadletter_topic(msg.topic()), msg.key(), msg.value(), headers)

    def deadletter_message(self, delivery_msg_topic: str, key: bytes | None, value: bytes | None,
                           reason: str, detail: str) -> None:
        """Dead-letter something by hand (e.g. a document its handler could not take)."""
        if self._dlq is not None:
            self._produce_dlq(deadletter_topic(delivery_msg_topic), key, value,
                              [("reason", reason.encode()), ("detail", detail.encode()[:1000])])

    def replayed(self, delivery: Delivery) -> bool:
        """``delivery`` was read (and handed over) once already, before a rewind."""
        return not delivery.synthetic and delivery.offset < self._replayed.get((delivery.topic,
                                                                               delivery.partition), -1)

    def _produce_dlq(self, topic, key, value, headers) -> None:
        def report(err, msg):
            if err is not None:  # kept whole: commit() sends it again before any offset passes it
                self._dlq_failed.append((err, (topic, key, value, headers)))
        try:
            self._dlq.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
        except BufferError:
            self._dlq.flush(10)
            self._dlq.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
        self._dlq.poll(0)

    # --- runs without a stop -------------------------------------------------------------------
    def silent_runs(self, timeout: float, now: float) -> list[Delivery]:
        """A stop document of the worker's own for every open run with no new document for
        ``timeout`` seconds."""
        out = []
        for (topic, partition), ledger in self.ledgers.items():
            if (ledger.next_offset or 0) < self._replayed.get((topic, partition), -1):
                continue  # still re-reading after a rewind: the rest of a run may be just behind
            for run in ledger.started:
                if now - ledger.last_seen.get(run, now) >= timeout:
                    out.append(Delivery("stop", no_stop_document(run, timeout), run, topic, partition,
                                        ledger.next_offset - 1, synthetic=True))
        return out

    def close_run(self, delivery: Delivery) -> None:
        """The worker ended ``delivery.run`` itself: its offsets become committable, and whatever
        of it comes later (its real stop) is skipped."""
        self.finish(delivery)
        self.closed[delivery.run] = None
        while len(self.closed) > _CLOSED_MEMORY:
            del self.closed[next(iter(self.closed))]
        self._keys.forget(delivery.run)

    # --- outages -------------------------------------------------------------------------------
    def pause(self) -> None:
        """Fetch nothing from the assigned partitions; polling still keeps the group membership."""
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(assigned)

    def rewind(self) -> None:
        """Commit what is finished, then read every assigned partition again from its first
        unfinished offset (so every unfinished run from its start document), with fresh
        ledgers. Runs closed by the run timeout stay closed."""
        from confluent_kafka import TopicPartition

        try:
            self.commit()
        except Exception:  # the broker may be down too: the rewind below is what matters
            log.exception("commit before the rewind failed")
        for tp, old in list(self.ledgers.items()):
            target = old.committable()
            if target is not None:
                # seek also drops what librdkafka fetched ahead for this partition
                self._consumer.seek(TopicPartition(tp[0], tp[1], target))
                self._replayed[tp] = max(self._replayed.get(tp, -1), old.next_offset)
            new = self.ledgers[tp] = _Ledger()
            new.last_seen = {run: t for run, t in old.last_seen.items() if run in old.started}
        self.eof.clear()
        self._keys = RunKeys(strict=True)
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.resume(assigned)

    # --- committing ----------------------------------------------------------------------------
    def finish(self, delivery: Delivery) -> None:
        """The effect of ``delivery`` and of every earlier document of its run is durable."""
        ledger = self.ledgers.get((delivery.topic, delivery.partition))
        if ledger is None:
            return
        ledger.finish_run(delivery.run, delivery.offset)
        if delivery.name == "stop":
            ledger.started.discard(delivery.run)
            ledger.last_seen.pop(delivery.run, None)

    def commit(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        """Commit every partition's first unfinished offset; returns how many offsets moved.
        Dead letters are flushed first: nothing is committed past a message not yet safe."""
        from confluent_kafka import TopicPartition

        if self._dlq is not None and (len(self._dlq) or self._dlq_failed):
            failed, self._dlq_failed = self._dlq_failed, []
            for _, message in failed:  # a dead letter whose delivery failed is sent again, never dropped
                self._produce_dlq(*message)
            left = self._dlq.flush(10)
            if left or self._dlq_failed:
                log.error("dead-letter topic not reachable (%d pending, %d failed); not committing",
                          left, len(self._dlq_failed), extra={"event": "commit-skipped"})
                return 0
        todo = []
        for tp in (partitions if partitions is not None else list(self.ledgers)):
            ledger = self.ledgers.get(tp)
            if ledger is None:
                continue
            offset = ledger.committable()
            if offset is not None and self._committed.get(tp) != offset:
                todo.append(TopicPartition(tp[0], tp[1], offset))
        if not todo:
            return 0
        self._consumer.commit(offsets=todo, asynchronous=False)
        for t in todo:
            self._committed[(t.topic, t.partition)] = t.offset
        self.stats.committed += len(todo)
        log.debug("committed", extra={"event": "commit", "offsets": {f"{t.topic}[{t.partition}]": t.offset
                                                                     for t in todo}})
        return len(todo)

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self._dlq is not None:
                self._dlq.flush(10)
            self._consumer.close()


def run_complete(name: str, doc: dict) -> bool:
    """The default durability rule: a run is durable once its stop document is handled."""
    return name == "stop"


class _Worker:
    """One :func:`run_worker` loop: hands documents over, waits out outages, closes silent runs."""

    def __init__(self, consumer: DocumentConsumer, handle, *, durable, on_error, reset, backoff, run_timeout):
        self.consumer = consumer
        self.stats = consumer.stats
        self.handle = handle
        self.durable = durable
        self.on_error = on_error
        self.reset = reset
        self.backoff = backoff
        self.run_timeout = run_timeout
        self.delay = backoff[0] if backoff else 0.0
        self.outage: dict | None = None  # since, partition and offset of the latest transient failure

    # --- handing over --------------------------------------------------------------------------
    def deliver(self, d: Delivery, stop: threading.Event | None) -> bool:
        """Hand ``d`` to the handler; False when an outage rewound the consumer (the rest of the
        batch is then stale and must be dropped)."""
        try:
            self.handle(d.name, d.doc)
        except Exception as e:
            if self.backoff is not None and is_transient(e):
                self._wait_out(d, e, stop)
                return False
            self._failed(d, e)
            return True
        self.stats.handled += 1
        if self.outage is not None and self._past_outage(d):
            self._recovered()
        if d.synthetic:
            self._closed(d)
        elif self.durable(d.name, d.doc):
            self.consumer.finish(d)
            if d.name == "stop":
                self.stats.runs_finished += 1
                log.info("run finished", extra={"event": "run-finished", "run": d.run,
                                                "partition": d.partition, "offset": d.offset})
        return True

    def _failed(self, d: Delivery, e: Exception) -> None:
        """A handler error that is the document's fault (called inside the ``except``)."""
        log.exception("handler failed on the %s document of run %s", d.name, d.run,
                      extra={"event": "handler-error", "doc_name": d.name, "run": d.run,
                             "partition": d.partition, "offset": d.offset})
        if self.on_error == "raise":
            raise HandlerError(f"handle({d.name!r}, ...) failed for run {d.run} at "
                               f"{d.topic}[{d.partition}]@{d.offset}: {e}") from e
        if not self.consumer.replayed(d):  # else it went to the dead-letter topic before the rewind
            self.consumer.deadletter_message(d.topic, d.run.encode() if d.run else None, pack(d.name, d.doc),
                                             "handler-error", f"{type(e).__name__}: {e}")
            self.stats.deadlettered += 1
            self.stats.reasons["handler-error"] = self.stats.reasons.get("handler-error", 0) + 1
        if d.synthetic:
            self._closed(d)
        elif d.name == "stop":
            self.consumer.finish(d)

    # --- outages -------------------------------------------------------------------------------
    def _wait_out(self, d: Delivery, e: Exception, stop: threading.Event | None) -> None:
        """Pause, wait the backoff, take a fresh handler, rewind to the first unfinished offsets."""
        self._note_failure(d, e)
        self.consumer.pause()
        while True:
            if not self._sleep(stop):
                return
            try:  # building the handler may need the service too (the catalogue's layout)
                handle = self.reset() if self.reset is not None else self.handle
                break
            except Exception as again:
                if not is_transient(again):
                    raise
                self._note_failure(d, again)
        self.consumer.rewind()
        self.stats.rewinds += 1
        self.handle = handle  # the old one may hold half of any run: the re-read starts afresh

    def _note_failure(self, d: Delivery, e: Exception) -> None:
        now = time.monotonic()
        where = {"doc_name": d.name, "run": d.run, "partition": d.partition, "offset": d.offset,
                 "error": f"{type(e).__name__}: {e}"[:500], "retry_in_s": self.delay}
        if self.outage is None:
            self.outage = {"since": now}
            self.stats.outages += 1
            log.warning("a service is unreachable (%s: %s); pausing, nothing of run %s is committed; "
                        "retrying in %.1f s", type(e).__name__, e, d.run, self.delay,
                        extra={"event": "outage", **where})
        else:
            took = now - self.outage["since"]
            log.warning("still unreachable after %.1f s (%s); retrying in %.1f s", took, type(e).__name__,
                        self.delay, extra={"event": "outage-retry", "outage_s": round(took, 1), **where})
        self.outage.update(tp=(d.topic, d.partition), offset=d.offset)

    def _sleep(self, stop: threading.Event | None) -> bool:
        """Wait the current backoff, then double it; False when ``stop`` was set meanwhile."""
        deadline = time.monotonic() + self.delay
        while not (stop is not None and stop.is_set()) and (left := deadline - time.monotonic()) > 0:
            # polling serves the group (heartbeats, max.poll.interval.ms); paused partitions yield
            # nothing, and whatever a new assignment yields is read again after the rewind
            self.consumer.poll(timeout=min(0.2, left))
            self.consumer.pause()
        self.delay = min(self.delay * 2, self.backoff[1])
        return not (stop is not None and stop.is_set())

    def _past_outage(self, d: Delivery) -> bool:
        tp = self.outage["tp"]
        if tp not in self.consumer.assignment:  # the failed partition went to another member
            return True
        return (d.topic, d.partition) == tp and d.offset >= self.outage["offset"]

    def _recovered(self) -> None:
        took = time.monotonic() - self.outage["since"]
        log.warning("the service is back after %.1f s; the worker goes on", took,
                    extra={"event": "recovered", "outage_s": round(took, 1), "rewinds": self.stats.rewinds})
        self.stats.recoveries += 1
        self.outage = None
        self.delay = self.backoff[0]

    # --- runs without a stop -------------------------------------------------------------------
    def close_silent_runs(self, now: float, stop: threading.Event | None) -> bool:
        """Close every run silent for ``run_timeout``; False when an outage rewound the consumer."""
        if self.run_timeout is None:
            return True
        for d in self.consumer.silent_runs(self.run_timeout, now):
            log.warning("run %s sent no document for %g s; the worker closes it with a failed stop document",
                        d.run, self.run_timeout, extra={"event": "run-timeout", "run": d.run,
                                                        "partition": d.partition, "offset": d.offset,
                                                        "run_timeout_s": self.run_timeout})
            if not self.deliver(d, stop):
                return False
        return True

    def _closed(self, d: Delivery) -> None:
        self.consumer.close_run(d)
        self.stats.runs_timed_out += 1

    # --- the loop ------------------------------------------------------------------------------
    def run(self, *, once: bool, until_idle: float | None, stop: threading.Event | None,
            commit_interval: float) -> None:
        c = self.consumer
        started = last_message = time.monotonic()
        last_commit = 0.0
        while not (stop is not None and stop.is_set()):
            batch = c.poll(timeout=0.2)
            now = time.monotonic()
            if batch:
                last_message = now
            rewound = not all(self.deliver(d, stop) for d in batch)  # all() stops at a rewind
            if not rewound:
                rewound = not self.close_silent_runs(time.monotonic(), stop)
            if rewound:  # the unfinished runs are about to be read again: that is not idleness
                now = last_message = time.monotonic()
            if now - last_commit >= commit_interval or (once and c.caught_up()):
                c.commit()
                last_commit = now
            if once and c.caught_up() and not batch:
                break
            if until_idle is not None and self._idle(now, last_message, started, until_idle):
                break

    def _idle(self, now: float, last_message: float, started: float, until_idle: float) -> bool:
        c = self.consumer
        if c.assignment:  # count from the assignment: a rebalance may come long after the start
            return now - max(last_message, c.assigned_at) >= until_idle
        # nothing assigned yet: a member killed without leaving holds its partitions until its
        # session times out, and only then does the group hand them over
        return now - max(started, c.unassigned_since) >= c.session_timeout + until_idle


def run_worker(config: KafkaConfig, handle: Callable[[str, dict], Any], *, group_id: str,
               durable: Callable[[str, dict], bool] = run_complete, once: bool = False,
               until_idle: float | None = None, stop: threading.Event | None = None,
               validate: bool = True, on_error: str = "raise", topics: Iterable[str] | None = None,
               consumer_config: dict | None = None, commit_interval: float = 0.2,
               reset: Callable[[], Callable[[str, dict], Any]] | None = None,
               retry_backoff: tuple[float, float] | None = (0.5, 30.0),
               run_timeout: float | None = 3600.0) -> WorkerStats:
    """Feed every valid document of ``topics`` (default: the config's document topic) to
    ``handle(name, doc)`` until stopped.

    ``durable(name, doc)`` is asked after ``handle`` returns: True means the effects of that
    document and all earlier ones of its run are durable, so their offsets may be committed
    (default :func:`run_complete`: on the stop document).
    Stops when ``stop`` is set, when ``once`` and every assigned partition is read to its end,
    or after ``until_idle`` seconds without a message (counted from the partitions'
    assignment; with none assigned, it waits the session timeout longer for the group to hand
    over the partitions of a member that died).

    A handler error for which :func:`tomobluesky._errors.is_transient` is true (a service
    unreachable) is waited out: nothing is dead-lettered or committed past it; the worker
    pauses, waits ``retry_backoff`` = ``(first, longest)`` seconds (doubling), rewinds every
    partition to its first unfinished offset and, when ``reset`` is given, replaces the handler
    with ``reset()``; the unfinished runs are then read again from their start documents.
    ``retry_backoff=None`` treats transient errors like the others.

    Other handler errors follow ``on_error``: ``"raise"`` (log, commit what is safe, raise
    :class:`HandlerError`; a restarted worker re-reads the run) or ``"deadletter"`` (the document
    goes to the dead-letter topic with reason ``handler-error`` and the worker goes on).

    A run with no document for ``run_timeout`` seconds (None: never) is closed: the handler gets
    a stop document the worker writes (``exit_status="fail"``, a ``reason`` starting with
    :data:`tomobluesky._errors.NO_STOP_PREFIX`), the run's offsets become committable, and its
    real stop, should it come later, is skipped.
    """
    if on_error not in ("raise", "deadletter"):
        raise ValueError("on_error must be 'raise' or 'deadletter'")
    if retry_backoff is not None and not 0 < retry_backoff[0] <= retry_backoff[1]:
        raise ValueError("retry_backoff must be (first, longest) with 0 < first <= longest")
    if run_timeout is not None and run_timeout <= 0:
        raise ValueError("run_timeout must be positive (or None)")
    consumer = DocumentConsumer(config, group_id, topics=topics, validate=validate, consumer_config=consumer_config)
    stats = consumer.stats
    log.info("worker started", extra={"event": "worker-start", "group": group_id, "topics": consumer.topics,
                                      "bootstrap": config.bootstrap, "run_timeout_s": run_timeout})
    worker = _Worker(consumer, handle, durable=durable, on_error=on_error, reset=reset, backoff=retry_backoff,
                     run_timeout=run_timeout)
    try:
        worker.run(once=once, until_idle=until_idle, stop=stop, commit_interval=commit_interval)
    except KeyboardInterrupt:
        log.info("interrupted", extra={"event": "interrupted"})
    finally:
        consumer.close()
        log.info("worker stopped", extra={"event": "worker-stop", "handled": stats.handled,
                                          "skipped": stats.skipped, "deadlettered": stats.deadlettered,
                                          "runs_finished": stats.runs_finished, "outages": stats.outages,
                                          "recoveries": stats.recoveries, "runs_timed_out": stats.runs_timed_out,
                                          "late_stops": stats.late_stops, "reasons": stats.reasons})
    return stats
