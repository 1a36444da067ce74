"""``KafkaPublisher``: a RunEngine subscriber that never waits on the network.

The RunEngine's thread only serialises the document, checks its size and appends it
to a deque (microseconds). It shares no lock with the sender: ``deque.append`` and
``popleft`` are atomic, and the sender looks for work in ``producer.poll(1 ms)``
instead of being woken through a condition variable, whose lock a preempted sender
could hold while the RunEngine waits for it. One background thread owns the producer
(confluent-kafka, acks=all, idempotence, no message timeout) and the journal:

* healthy broker, empty journal → documents go straight to the producer;
* no delivery report for ``stall_s`` while messages are in flight (broker down),
  or a full producer buffer → later documents are appended to the on-disk journal
  instead. A busy but working broker (a burst whose oldest message waits its turn
  longer than ``stall_s`` while acknowledgements keep coming) is not a stall;
* while the journal holds anything, new documents are appended behind it and
  the journal is replayed in order, one batch at a time, each batch committed
  on disk only once the broker acknowledged all of it;
* ``close()`` hands back to the journal whatever the broker did not take, so a
  later publisher on the same journal directory sends it first.

Per run the order is kept: a run's messages share a key (its start uid), hence
a partition, and both the idempotent producer and the journal keep order.
A document larger than ``max_message_bytes`` is saved under
``<journal>/rejected/`` and reported by name (:class:`DocumentTooLarge`).

``abort_run_on_kafka_exception`` (the NSLS-II file's key, default true): a document
that cannot be serialised or is too large raises in the RunEngine, and a refusal by
the broker (reported later, from the sender) raises at the next publish call, after
that call's document is queued; so the run aborts. False: every such error is
logged, kept in ``errors`` and passed to ``on_error``; the scan goes on. In both
cases the document is saved, never dropped. An outage is not an error here: the
journal holds the documents until the broker is back.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable

from ._client_settings import producer_settings
from ._codec import CodecError, pack
from ._config import KafkaConfig, default_journal_dir
from ._journal import Journal
from ._keys import RunKeys

log = logging.getLogger("tomobluesky.transport.publisher")
_CLOSE = object()
#: the sender releases the GIL after this many messages: a publish call that arrives while the sender
#: works through a backlog waits for a few hundred produce() calls (~0.5 ms), not a whole switch interval
_YIELD_EVERY = 256


class PublishError(RuntimeError):
    """A document could not be published (it is kept on disk; the message says where)."""


class DocumentTooLarge(PublishError):
    """The serialised document exceeds the broker's message size limit."""


class KafkaPublisher:
    """Publish Bluesky documents to ``<beamline>.bluesky.runengine.documents``.

    >>> publisher = KafkaPublisher(load_config())       # doctest: +SKIP
    >>> RE.subscribe(publisher)                          # doctest: +SKIP

    ``on_too_large``: ``"raise"`` (the RunEngine sees the error and the plan fails
    loudly) or ``"report"`` (logged, kept in ``errors`` and passed to ``on_error``;
    the scan goes on); by default ``"raise"`` when the configuration's
    ``abort_run_on_kafka_exception`` is true, else ``"report"``. It governs broker
    refusals too (see the module's docstring). Either way the document is saved.
    """

    def __init__(self, config: KafkaConfig | None = None, *, bootstrap: str | None = None,
                 topic: str | None = None, journal_dir: str | Path | None = None,
                 on_too_large: str | None = None, on_error: Callable[[PublishError], None] | None = None,
                 stall_s: float = 0.5, replay_batch: int = 2000, producer_config: dict | None = None):
        config = config or KafkaConfig()
        if bootstrap:
            config = config.replace(bootstrap=bootstrap)
        if topic:
            config = config.replace(topic=topic)
        if on_too_large is None:
            on_too_large = "raise" if config.abort_run_on_kafka_exception else "report"
        if on_too_large not in ("raise", "report"):
            raise ValueError("on_too_large must be 'raise' or 'report'")
        self.config = config
        self.topic = config.document_topic
        self.max_message_bytes = config.max_message_bytes
        self.on_too_large = on_too_large
        self.on_error = on_error
        self.stall_s = stall_s
        self.replay_batch = replay_batch
        self.journal_dir = Path(journal_dir or config.journal_dir or default_journal_dir() / self.topic)
        self.rejected_dir = self.journal_dir / "rejected"
        self.errors: list[PublishError] = []
        # "waited": publish calls that found the queue full and waited for the sender
        self.stats = {"published": 0, "delivered": 0, "journaled": 0, "replayed": 0, "rejected": 0, "waited": 0}
        self._keys = RunKeys()
        self._queue: deque = deque()
        self._queue_size = config.queue_size
        self._raise_next: PublishError | None = None  # a broker refusal, raised at the next call
        self._last_delivery = 0.0  # monotonic time of the last delivery report
        self._journal = Journal(self.journal_dir)
        self._seq = itertools.count(self._journal.max_seq + 1)
        self._inflight: OrderedDict[int, tuple] = OrderedDict()  # seq → (origin, t, key, value)
        self._replaying: set[int] = set()
        self._replay_last = None  # last journal Record of the batch in flight
        self._carry: list = []  # journal records taken but refused by a full producer buffer
        self._given_back: list = []  # direct messages purged at close, journaled ahead of the rest
        self._closed = False
        self._idle = threading.Event()
        from confluent_kafka import Producer

        ours = {
            "bootstrap.servers": config.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 0,  # never expire: an outage is waited out (then the journal holds the rest)
            "message.max.bytes": config.max_message_bytes + 4096,
            "queue.buffering.max.messages": 200_000,
            "socket.connection.setup.timeout.ms": 3000,
            "reconnect.backoff.max.ms": 1000,
            "logger": logging.getLogger("tomobluesky.transport.librdkafka"),
        }
        site = {**dict(config.producer_config), **(producer_config or {})}
        settings = producer_settings(ours, site, config.security_config, source=config.source)
        self._producer = Producer(settings)
        self._thread = threading.Thread(target=self._run, name="kafka-publisher", daemon=True)
        self._thread.start()
        if self._journal.pending:
            log.warning("replaying %d journaled documents from %s", self._journal.pending, self.journal_dir)

    # ---- the RunEngine side ------------------------------------------------------------------
    def __call__(self, name: str, doc: dict) -> None:
        if self._closed:
            raise PublishError("publisher is closed")
        key = self._keys.key(name, doc)
        seq = next(self._seq)
        try:
            value = pack(name, doc)
        except CodecError as e:
            err = PublishError(f"{_describe(name, doc)} cannot be serialised: {e}")
            self._report(err, seq, key, name, doc_bytes=None)
            raise err from e
        if len(value) > self.max_message_bytes:
            err = DocumentTooLarge(f"{_describe(name, doc)} is {len(value):,} bytes serialised, over the "
                                   f"{self.max_message_bytes:,}-byte message limit of topic {self.topic}")
            path = self._report(err, seq, key, name, doc_bytes=value)
            if self.on_too_large == "raise":
                raise DocumentTooLarge(f"{err} (kept in {path})")
            return
        self.stats["published"] += 1
        if len(self._queue) >= self._queue_size:
            self._wait_for_room()
        self._queue.append((seq, key.encode() if key else None, value))
        if self._raise_next is not None and self.on_too_large == "raise":
            err, self._raise_next = self._raise_next, None
            raise err

    def _wait_for_room(self) -> None:
        """The only place a publish call waits: the sender has fallen ``queue_size`` documents
        behind (the journal disk cannot keep up)."""
        self.stats["waited"] += 1
        log.error("the publish queue is full (%d documents): the RunEngine waits for the journal disk",
                  self._queue_size)
        while len(self._queue) >= self._queue_size and self._thread.is_alive():
            time.sleep(0.001)

    def _report(self, err: PublishError, seq: int, key: str | None, name: str, doc_bytes: bytes | None):
        path = None
        if doc_bytes is not None:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            path = self.rejected_dir / f"{seq:020d}-{name}-{key or 'nokey'}.msgpack"
            path.write_bytes(doc_bytes)
        self.stats["rejected"] += 1
        log.error("%s%s", err, f" (kept in {path})" if path else "")
        self.errors.append(err)
        if self.on_error is not None:
            try:
                self.on_error(err)
            except Exception:
                log.exception("on_error callback failed")
        return path

    # ---- the sender thread -------------------------------------------------------------------
    def _take(self, n: int = 5000) -> list:
        items = []
        pop = self._queue.popleft
        try:
            while len(items) < n:
                items.append(pop())
        except IndexError:
            pass
        return items

    def _run(self) -> None:
        closing = False
        idle = False
        while True:
            items = self._take()
            if not items:
                self._producer.poll(0.001)  # the wait for work; serves delivery reports meanwhile
                items = self._take()
            for i, item in enumerate(items):
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    time.sleep(0)  # hand the GIL to a waiting RunEngine now, not at the 5 ms switch interval
                if item is _CLOSE:
                    closing = True
                    continue
                if closing or self._must_journal():
                    self._journal.append(*item)
                    self.stats["journaled"] += 1
                else:
                    self._produce(item[0], item[1], item[2], "direct")
            self._journal.flush()
            self._producer.poll(0)
            if not closing:
                self._replay()
            now_idle = not items and not self._queue and not self._inflight and not self._journal.pending \
                and not self._carry
            if now_idle != idle:  # the Event's lock only when the state changes
                idle = now_idle
                (self._idle.set if idle else self._idle.clear)()
            if closing:
                self._shutdown()
                return

    def _stalled(self) -> bool:
        """No delivery report for ``stall_s`` while the oldest message in flight waits."""
        if not self._inflight:
            return False
        _, t, _, _ = next(iter(self._inflight.values()))
        return time.monotonic() - max(t, self._last_delivery) > self.stall_s

    def _must_journal(self) -> bool:
        return bool(self._journal.pending or self._replaying or self._carry or self._replay_last
                    or self._stalled())

    def _produce(self, seq: int, key: bytes | None, value: bytes, origin: str) -> bool:
        try:
            self._producer.produce(self.topic, value=value, key=key,
                                   on_delivery=lambda err, msg, s=seq: self._delivered(s, err))
        except BufferError:
            if origin == "direct":
                self._journal.append(seq, key, value)
                self.stats["journaled"] += 1
            return False
        except Exception as e:  # KafkaException: e.g. message too large for the client
            self._inflight[seq] = (origin, time.monotonic(), key, value)
            self._delivered(seq, e)
            return True
        self._inflight[seq] = (origin, time.monotonic(), key, value)
        if origin == "journal":
            self._replaying.add(seq)
        return True

    def _delivered(self, seq: int, err) -> None:
        entry = self._inflight.pop(seq, None)
        self._replaying.discard(seq)
        if entry is None:
            return
        origin, _, key, value = entry
        self._last_delivery = time.monotonic()
        if err is None:
            self.stats["delivered"] += 1
            if origin == "journal":
                self.stats["replayed"] += 1
            return
        code = getattr(err, "code", lambda: None)()
        from confluent_kafka import KafkaError

        if code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            if origin == "direct":
                self._given_back.append((seq, key, value))
            return
        name = _peek_name(value)
        e = PublishError(f"the broker refused message {seq} ({name} document of run "
                         f"{key.decode() if key else '?'}): {err}")
        path = self._report(e, seq, key.decode() if key else None, name, doc_bytes=value)
        self._raise_next = PublishError(f"{e} (kept in {path})")

    def _replay(self) -> None:
        if self._replaying:
            return
        if self._replay_last is not None:  # the previous batch is entirely acknowledged
            self._journal.commit(self._replay_last)
            self._replay_last = None
        if not self._carry and not self._journal.pending:
            return
        batch = self._carry or self._journal.take(self.replay_batch)
        self._carry = []
        for i, rec in enumerate(batch):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)
            if not self._produce(rec.seq, rec.key, rec.value, "journal"):
                self._carry = batch[i:]
                break
            self._replay_last = rec

    def _shutdown(self) -> None:
        self._producer.poll(0)
        if not self._replaying and self._replay_last is not None:
            self._journal.commit(self._replay_last)
            self._replay_last = None
        self._producer.purge(in_queue=True, in_flight=True)
        self._producer.poll(0)
        self._producer.flush(0)
        if self._given_back:
            self._journal.write_segment(self._given_back)
            log.warning("%d documents the broker did not take were journaled in %s",
                        len(self._given_back), self.journal_dir)
        self._journal.close()

    # ---- control -----------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> int:
        """Wait until everything published so far is acknowledged by the broker (journal
        included). Returns how many documents are still owed (0 on success)."""
        deadline = time.monotonic() + timeout
        time.sleep(0.02)
        while time.monotonic() < deadline:
            if self._idle.wait(0.05) and not self._queue and not self._inflight and not self._journal.pending:
                return 0
        return self.pending()

    def pending(self) -> int:
        return len(self._queue) + len(self._inflight) + self._journal.pending + len(self._carry)

    def close(self, timeout: float = 10.0) -> int:
        """Flush for up to ``timeout`` s, then stop; whatever the broker has not acknowledged
        stays in the journal for the next publisher. Returns how many documents were left."""
        if self._closed:
            return 0
        left = self.flush(timeout)
        self._closed = True
        self._queue.append(_CLOSE)
        self._thread.join()
        if left:
            log.warning("closing with %d documents unacknowledged; they stay in %s", left, self.journal_dir)
        return left

    def __enter__(self) -> "KafkaPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(name: str, doc: dict) -> str:
    uid = doc.get("uid") or doc.get("datum_id") or "?"
    extra = ""
    if name == "event":
        extra = f", seq_num {doc.get('seq_num')}"
    return f"the {name} document {uid}{extra}"


def _peek_name(value: bytes) -> str:
    try:
        import msgpack

        return str(msgpack.unpackb(value, raw=False, strict_map_key=False)[0])
    except Exception:
        return "?"
