"""The worker loop behind every worker process: :func:`run_worker` with a :class:`WorkerPolicy`.

::

    run_worker(load_config(), router, group_id="tomo-live-recon",
               policy=WorkerPolicy(on_error="deadletter", run_timeout=600))

It hands each document of :class:`._consumer.DocumentConsumer` to the handler, tells the
consumer when a run is durable (then its offsets may be committed), waits out outages of
the services a handler writes to (pause, back off, rewind, fresh handler), and closes
runs that went silent.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._errors import is_transient
from ._codec import pack
from ._config import KafkaConfig
from ._consumer import Delivery, DocumentConsumer, WorkerStats

log = logging.getLogger("tomobluesky.transport.worker")


class HandlerError(RuntimeError):
    """``handle(name, doc)`` raised; nothing of that run was committed."""


def run_complete(name: str, doc: dict) -> bool:
    """The default durability rule: a run is durable once its stop document is handled."""
    return name == "stop"


@dataclass(frozen=True)
class WorkerPolicy:
    """How a worker treats documents, errors and time (see :func:`run_worker`).

    ``durable(name, doc)``: asked after ``handle`` returns; True means that document and all
    earlier ones of its run are durable, so their offsets may be committed (default
    :func:`run_complete`: on the stop document).
    ``on_error``: a handler error that is the document's fault: ``"raise"`` (log, commit what is
    safe, raise :class:`HandlerError`) or ``"deadletter"`` (to the dead-letter topic, go on).
    ``retry_backoff``: ``(first, longest)`` seconds between retries when a service is unreachable
    (doubling); None treats those errors like the others.
    ``run_timeout``: a run silent this long (s) is closed with a stop document the worker writes;
    None: never.
    ``once``: stop when every assigned partition is read to its end. ``until_idle``: stop after
    this many seconds without a message. ``validate``: check documents against event_model's
    schemas. ``commit_interval``: seconds between offset commits.
    """

    durable: Callable[[str, dict], bool] = run_complete
    on_error: str = "raise"
    retry_backoff: tuple[float, float] | None = (0.5, 30.0)
    run_timeout: float | None = 3600.0
    once: bool = False
    until_idle: float | None = None
    validate: bool = True
    commit_interval: float = 0.2

    def __post_init__(self):
        if self.on_error not in ("raise", "deadletter"):
            raise ValueError(f"on_error must be 'raise' or 'deadletter', not {self.on_error!r}")
        backoff = self.retry_backoff
        if backoff is not None and not 0 < backoff[0] <= backoff[1]:
            raise ValueError("retry_backoff must be (first, longest) with 0 < first <= longest")
        if self.run_timeout is not None and self.run_timeout <= 0:
            raise ValueError("run_timeout must be positive (or None)")
        if self.until_idle is not None and self.until_idle < 0:
            raise ValueError("until_idle must be >= 0 (or None)")

    def replace(self, **changes) -> "WorkerPolicy":
        return dataclasses.replace(self, **changes)


class _Worker:
    """One :func:`run_worker` loop: hands documents over, waits out outages, closes silent runs."""

    def __init__(self, consumer: DocumentConsumer, handle, policy: WorkerPolicy, reset=None):
        self.consumer = consumer
        self.stats = consumer.stats
        self.handle = handle
        self.policy = policy
        self.durable = policy.durable
        self.on_error = policy.on_error
        self.reset = reset
        self.backoff = policy.retry_backoff
        self.run_timeout = policy.run_timeout
        self.delay = self.backoff[0] if self.backoff else 0.0
        self.outage: dict | None = None  # since, partition and offset of the latest transient failure

    # --- handing over --------------------------------------------------------------------------
    def deliver(self, d: Delivery, stop: threading.Event | None) -> bool:
        """Hand ``d`` to the handler; False when an outage rewound the consumer (the rest of the
        batch is then stale and must be dropped)."""
        try:
            self.handle(d.name, d.doc)
        except Exception as e:
            if self.backoff is None or not is_transient(e):
                self._failed(d, e)
                return True
            outage = e
        else:
            outage = None
        if outage is not None:  # waited out after the except: an error of reset() must not get it as context,
            self._wait_out(d, outage, stop)  # which would make a lasting error look transient (retried forever)
            return False
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

    def _restart_lost_runs(self, batch: list[Delivery], stop: threading.Event | None) -> bool:
        """A rebalance took partitions whose runs the handler holds in part: the next reader of those
        partitions (this member too) starts them again from their start documents, which the old
        handler would refuse as repeated. Take a fresh handler and re-read every partition still
        assigned from its first unfinished offset, as after an outage. False when there is no ``reset``:
        nothing is rewound, and ``batch`` must be handed over as it is (else it would be lost)."""
        self.consumer.lost_runs = False
        if self.reset is None:
            return False
        log.info("a rebalance took partitions with unfinished runs; unfinished runs are read again afresh",
                 extra={"event": "rebalance-restart"})
        self.consumer.pause()
        while True:
            try:
                handle = self.reset()
                break
            except Exception as e:
                if not is_transient(e) or self.backoff is None:
                    raise
                log.warning("cannot build a fresh handler yet (%s: %s); retrying in %.1f s", type(e).__name__, e,
                            self.delay, extra={"event": "outage-retry"})
                if not self._sleep(stop):
                    return True
        self.consumer.rewind()
        self.consumer.undelivered(batch)  # read, never handed over: a first reading when read again
        self.stats.rewinds += 1
        self.handle = handle
        return True

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
    def run(self, stop: threading.Event | None = None) -> None:
        c = self.consumer
        once, until_idle, commit_interval = self.policy.once, self.policy.until_idle, self.policy.commit_interval
        started = last_message = time.monotonic()
        last_commit = 0.0
        while not (stop is not None and stop.is_set()):
            batch = c.poll(timeout=0.2)
            # after a restart the batch is read again (every partition in it is seeked back); without a
            # reset nothing is rewound and the batch is handed over below
            if c.lost_runs and self._restart_lost_runs(batch, stop):
                last_message = time.monotonic()
                continue
            now = time.monotonic()
            if batch:
                last_message = now
            rewound = False
            for i, d in enumerate(batch):
                if not self.deliver(d, stop):  # a rewind: the rest of the batch is stale
                    c.undelivered(batch[i:])  # never handed over (d's handler failed transiently)
                    rewound = True
                    break
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
               policy: WorkerPolicy | None = None, reset: Callable[[], Callable[[str, dict], Any]] | None = None,
               stop: threading.Event | None = None, topics: Iterable[str] | None = None) -> WorkerStats:
    """Feed every valid document of ``topics`` (default: the config's document topic) to
    ``handle(name, doc)`` until stopped; what counts as durable, what an error does and when to
    stop are the ``policy`` (:class:`WorkerPolicy`).

    Stops when ``stop`` is set, when ``policy.once`` and every assigned partition is read to its
    end, or after ``policy.until_idle`` seconds without a message (counted from the partitions'
    assignment; with none assigned, it waits the session timeout longer for the group to hand
    over the partitions of a member that died).

    A handler error for which :func:`tomobluesky._errors.is_transient` is true (a service
    unreachable) is waited out: nothing is dead-lettered or committed past it; the worker
    pauses, waits ``policy.retry_backoff``, rewinds every partition to its first unfinished
    offset and, when ``reset`` is given, replaces the handler with ``reset()``; the unfinished
    runs are then read again from their start documents. Other handler errors follow
    ``policy.on_error``. A run with no document for ``policy.run_timeout`` seconds is closed: the
    handler gets a stop document the worker writes (``exit_status="fail"``, a ``reason`` starting
    with :data:`tomobluesky._errors.NO_STOP_PREFIX`), the run's offsets become committable, and
    its real stop, should it come later, is skipped. Handlers must be idempotent per run
    (complete → skip, partial → replace): a restarted worker re-reads unfinished runs.
    """
    policy = policy or WorkerPolicy()
    consumer = DocumentConsumer(config, group_id, topics=topics, validate=policy.validate)
    stats = consumer.stats
    log.info("worker started", extra={"event": "worker-start", "group": group_id, "topics": consumer.topics,
                                      "bootstrap": config.bootstrap, "run_timeout_s": policy.run_timeout})
    worker = _Worker(consumer, handle, policy, reset)
    try:
        worker.run(stop)
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
