"""The consumer side: decode, validate, dead-letter, and commit only what is durable.

:func:`run_worker` is the loop behind every worker process::

    run_worker(load_config(), router, group_id="tomo-live-recon")

Commit rule (whole runs, at least once): the offset of a partition advances past
a message only when the message's run is finished, i.e. when ``durable(name,
doc)`` returned True after ``handle`` succeeded on that run's document (by
default: its stop document). A restarted (or rebalanced) worker therefore
re-reads every unfinished run from its start document, and may see a finished
run again when it lies behind an unfinished one: handlers must be idempotent per
run (complete → skip, partial → replace). A document whose run's start document
this consumer has not seen is skipped: its start lies behind the committed
offset, which only happens when that run was already finished.

Malformed messages (undecodable msgpack, not a ``[name, doc]`` pair, unknown
document name, schema-invalid per event_model) go to ``<topic>.deadletter``
with the original key and bytes and the reason in the ``reason`` header; the
worker goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._codec import CodecError, unpack
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


@dataclass
class WorkerStats:
    handled: int = 0
    skipped: int = 0
    deadlettered: int = 0
    committed: int = 0
    runs_finished: int = 0
    reasons: dict = field(default_factory=dict)


class _Ledger:
    """Offsets of one partition not yet committable, grouped by run."""

    def __init__(self):
        self.entries: deque[list] = deque()  # [offset, run, done]
        self.by_run: dict[str | None, list[list]] = {}
        self.next_offset: int | None = None  # last offset read + 1
        self.started: set[str] = set()

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
        settings = {
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
            **dict(config.consumer_config),
            **(consumer_config or {}),
        }
        self._consumer = Consumer(settings)
        self._dlq = Producer({"bootstrap.servers": config.bootstrap, "acks": "all", "enable.idempotence": True,
                              "linger.ms": 5, "message.max.bytes": max(config.max_message_bytes, 1_000_000) + 65536,
                              "logger": logging.getLogger("tomobluesky.transport.librdkafka")}) \
            if deadletter else None
        self._dlq_failed: list = []
        self.ledgers: dict[tuple[str, int], _Ledger] = {}
        self.eof: set[tuple[str, int]] = set()
        self._keys = RunKeys(strict=True)
        self._committed: dict[tuple[str, int], int] = {}
        self.stats = WorkerStats()
        self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # --- rebalancing ---------------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for p in partitions:
            self.ledgers[(p.topic, p.partition)] = _Ledger()
            self.eof.discard((p.topic, p.partition))
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
            try:
                name, doc = decode_document(msg.value(), validate=self.validate)
            except Malformed as m:
                self._deadletter(msg, m)
                ledger.add(msg.offset(), None, done=True)
                continue
            # the run is the start uid the documents link to (not the key: bluesky-kafka's
            # Publisher uses one key for all runs)
            run = self._keys.key(name, doc)
            entry_run = run
            if name == "start":
                ledger.started.add(run)
            elif run not in ledger.started:
                # its start lies behind the committed offset: that run was finished already
                ledger.add(msg.offset(), run, done=True)
                self.stats.skipped += 1
                continue
            ledger.add(msg.offset(), entry_run)
            out.append(Delivery(name, doc, run, msg.topic(), msg.partition(), msg.offset()))
        return out

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

    def _produce_dlq(self, topic, key, value, headers) -> None:
        def report(err, msg):
            if err is not None:
                self._dlq_failed.append(err)
        try:
            self._dlq.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
        except BufferError:
            self._dlq.flush(10)
            self._dlq.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
        self._dlq.poll(0)

    # --- committing ----------------------------------------------------------------------------
    def finish(self, delivery: Delivery) -> None:
        """The effect of ``delivery`` and of every earlier document of its run is durable."""
        ledger = self.ledgers.get((delivery.topic, delivery.partition))
        if ledger is None:
            return
        ledger.finish_run(delivery.run, delivery.offset)
        if delivery.name == "stop":
            ledger.started.discard(delivery.run)

    def commit(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        """Commit every partition's first unfinished offset; returns how many offsets moved.
        Dead letters are flushed first: nothing is committed past a message not yet safe."""
        from confluent_kafka import TopicPartition

        if self._dlq is not None and len(self._dlq):
            left = self._dlq.flush(10)
            if left or self._dlq_failed:
                log.error("dead-letter topic not reachable (%d pending, %d failed); not committing",
                          left, len(self._dlq_failed), extra={"event": "commit-skipped"})
                self._dlq_failed.clear()
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


def run_worker(config: KafkaConfig, handle: Callable[[str, dict], Any], *, group_id: str,
               durable: Callable[[str, dict], bool] = run_complete, once: bool = False,
               until_idle: float | None = None, stop: threading.Event | None = None,
               validate: bool = True, on_error: str = "raise", topics: Iterable[str] | None = None,
               consumer_config: dict | None = None, commit_interval: float = 0.2) -> WorkerStats:
    """Feed every valid document of ``topics`` (default: the config's document topic) to
    ``handle(name, doc)`` until stopped.

    ``durable(name, doc)`` is asked after ``handle`` returns: True means the effects of that
    document and all earlier ones of its run are durable, so their offsets may be committed
    (default :func:`run_complete`: on the stop document).
    Stops when ``stop`` is set, when ``once`` and every assigned partition is read to its end,
    or after ``until_idle`` seconds without a message. ``on_error``: ``"raise"`` (log,
    commit what is safe, raise :class:`HandlerError`; a restarted worker re-reads the run) or
    ``"deadletter"`` (the document goes to the dead-letter topic with reason
    ``handler-error`` and the worker goes on).
    """
    if on_error not in ("raise", "deadletter"):
        raise ValueError("on_error must be 'raise' or 'deadletter'")
    consumer = DocumentConsumer(config, group_id, topics=topics, validate=validate, consumer_config=consumer_config)
    stats = consumer.stats
    log.info("worker started", extra={"event": "worker-start", "group": group_id, "topics": consumer.topics,
                                      "bootstrap": config.bootstrap})
    last_message = time.monotonic()
    last_commit = 0.0
    started = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()):
            batch = consumer.poll(timeout=0.2)
            now = time.monotonic()
            if batch:
                last_message = now
            for d in batch:
                try:
                    handle(d.name, d.doc)
                except Exception as e:
                    log.exception("handler failed on the %s document of run %s", d.name, d.run,
                                  extra={"event": "handler-error", "doc_name": d.name, "run": d.run,
                                         "partition": d.partition, "offset": d.offset})
                    if on_error == "raise":
                        raise HandlerError(f"handle({d.name!r}, ...) failed for run {d.run} at "
                                           f"{d.topic}[{d.partition}]@{d.offset}: {e}") from e
                    from ._codec import pack

                    consumer.deadletter_message(d.topic, d.run.encode() if d.run else None, pack(d.name, d.doc),
                                                "handler-error", f"{type(e).__name__}: {e}")
                    stats.deadlettered += 1
                    stats.reasons["handler-error"] = stats.reasons.get("handler-error", 0) + 1
                    consumer.finish(d) if d.name == "stop" else None
                    continue
                stats.handled += 1
                if durable(d.name, d.doc):
                    consumer.finish(d)
                    if d.name == "stop":
                        stats.runs_finished += 1
                        log.info("run finished", extra={"event": "run-finished", "run": d.run,
                                                        "partition": d.partition, "offset": d.offset})
            if now - last_commit >= commit_interval or (once and consumer.caught_up()):
                consumer.commit()
                last_commit = now
            if once and consumer.caught_up() and not batch:
                break
            if until_idle is not None and now - last_message >= until_idle and (consumer.assignment or
                                                                                now - started > until_idle + 30):
                break
    except KeyboardInterrupt:
        log.info("interrupted", extra={"event": "interrupted"})
    finally:
        consumer.close()
        log.info("worker stopped", extra={"event": "worker-stop", "handled": stats.handled,
                                          "skipped": stats.skipped, "deadlettered": stats.deadlettered,
                                          "runs_finished": stats.runs_finished, "reasons": stats.reasons})
    return stats
