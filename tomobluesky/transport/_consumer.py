"""The consumer side: a consumer-group member that hands out valid documents, dead-letters
the rest, and commits only what is durable.

Commit rule (whole runs, at least once): the offset of a partition advances past
a message only when the message's run is finished (:class:`.Ledger`), i.e. when
the worker called :meth:`DocumentConsumer.finish` on that run (its handler made the
run durable), or closed the run itself after a run timeout. A restarted (or
rebalanced, or rewound) consumer therefore re-reads every unfinished run from its
start document, and may see a finished run again when it lies behind an unfinished
one. A document whose run's start document this consumer has not seen is skipped:
its start lies behind the committed offset, which only happens when that run was
already finished.

Malformed messages (:mod:`._decode`) go to ``<topic>.deadletter`` with the original
key and bytes and the reason in the ``reason`` header; the consumer goes on.
The loop around it (handlers, outages, run timeouts) is :mod:`._worker`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from .._errors import NO_STOP_PREFIX
from ._client_settings import consumer_settings
from ._config import KafkaConfig, deadletter_topic
from ._decode import Malformed, decode_document
from ._keys import RunKeys
from ._ledger import Ledger

log = logging.getLogger("tomobluesky.transport.worker")


@dataclass
class Delivery:
    name: str
    doc: dict
    run: str | None
    topic: str
    partition: int
    offset: int
    synthetic: bool = False  # a stop document the worker wrote for a run that sent none
    replayed: bool = False  # handed over once already, before a rewind (see DocumentConsumer.replayed)


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
        self.ledgers: dict[tuple[str, int], Ledger] = {}
        self.eof: set[tuple[str, int]] = set()
        self._keys = RunKeys(strict=True)
        self._committed: dict[tuple[str, int], int] = {}
        self._replayed: dict[tuple[str, int], int] = {}  # offsets below were read once before a rewind
        # documents below were handed over before a rewind (lowered by undelivered(), which the one above is
        # not: a malformed message was dead-lettered when read, handed over or not)
        self._handed: dict[tuple[str, int], int] = {}
        self.closed: dict[str, None] = {}  # runs closed by the run timeout, oldest first
        self.lost_runs = False  # a rebalance took partitions with unfinished runs (see _Worker.run)
        self.assigned_at: float | None = None
        self.unassigned_since = time.monotonic()
        self.stats = WorkerStats()
        self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # --- rebalancing ---------------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for p in partitions:
            self.ledgers[(p.topic, p.partition)] = Ledger()
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
            ledger = self.ledgers.pop((p.topic, p.partition), None)
            if ledger is not None and ledger.started:
                # the handler holds part of these runs: whoever reads the partition next (this member
                # too, from the committed offset) starts them again from their start documents
                self.lost_runs = True
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
            out.append(Delivery(name, doc, run, msg.topic(), msg.partition(), msg.offset(),
                                replayed=msg.offset() < self._handed.get(tp, -1)))
        return out

    def _skip_closed(self, ledger: Ledger, msg, name: str, run: str, replayed: bool) -> None:
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

    def undelivered(self, deliveries) -> None:
        """Call after a rewind: ``deliveries`` were read but never handed over (or their handler failed
        transiently). When read again, those read then for the first time count as new (a handler error
        on one is dead-lettered then); what was handed over before an earlier rewind stays replayed."""
        for d in deliveries:
            tp = (d.topic, d.partition)
            if not d.replayed and self._handed.get(tp, -1) > d.offset:
                self._handed[tp] = d.offset

    def replayed(self, delivery: Delivery) -> bool:
        """``delivery`` was handed over once already, before a rewind: a handler error on it went to the
        dead-letter topic then."""
        return delivery.replayed  # False for the worker's own stop documents

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
                self._handed[tp] = max(self._handed.get(tp, -1), old.next_offset)
            new = self.ledgers[tp] = Ledger()
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
