"""In-process callbacks off the RunEngine's thread.

A callback subscribed straight to a RunEngine runs inside it: every
millisecond it spends (a Tiled request, folding a frame into the live
slices, a client retrying a server that is down) is a millisecond the scan
waits. :class:`OffThread` puts a bounded queue in between:

    RE.subscribe(OffThread(live_reconstruction_router(sink), name="live"))

The RunEngine's call only appends the document to the queue; one worker
thread per dispatcher hands documents to the callback in the order they were
emitted. Nothing is dropped: when the queue is full the RunEngine waits (with
a warning in the log) until there is room again. Documents are small (pixels
stay in the detector's HDF5 file, an event is about a kilobyte), so the
default 20,000 documents cost tens of MB at most.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)

#: how long the interpreter waits at exit for each dispatcher's backlog before giving up on it
EXIT_TIMEOUT = 60.0

_CLOSE = object()  # queued by close(): the worker stops once everything before it is delivered
_open: weakref.WeakSet = weakref.WeakSet()  # dispatchers with a worker that may hold documents


class OffThread:
    """Deliver ``(name, doc)`` to ``callback`` on a worker thread, in order, behind a queue of ``maxsize``.

    - ``self(name, doc)`` (what the RunEngine calls) only enqueues; it blocks only while the queue is full.
    - An exception from ``callback`` is logged and counted (``stats()["errors"]``); the next document is
      still delivered, and the RunEngine never sees it.
    - ``pending()`` is the number of documents waiting: a callback can ask it whether it is behind.
    - ``flush(timeout)`` waits until everything queued so far is delivered and returns how many are left.
    - ``close(timeout)`` delivers the backlog and stops the worker. A later document starts a new worker,
      so one dispatcher serves any number of runs. At interpreter exit open dispatchers are drained
      (up to ``EXIT_TIMEOUT`` seconds each).
    """

    def __init__(self, callback: Callable[[str, dict], object], *, maxsize: int = 20_000,
                 name: str | None = None):
        if not callable(callback):
            raise TypeError(f"OffThread needs a callable taking (name, doc), got {type(callback).__name__}")
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.callback = callback
        self.maxsize = int(maxsize)
        self.name = name or getattr(callback, "__name__", type(callback).__name__)
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._in_hand = 0  # taken off the queue, not yet returned from the callback
        self._markers = 0  # close() markers in the queue (not documents)
        self._worker: threading.Thread | None = None
        self._stats = {"queued": 0, "delivered": 0, "errors": 0, "max_backlog": 0, "full_waits": 0}
        self.last_error: str | None = None

    # --- the RunEngine's side --------------------------------------------------------
    def __call__(self, name: str, doc: dict) -> None:
        with self._cond:
            if len(self._queue) >= self.maxsize and threading.current_thread() is not self._worker:
                self._wait_for_room(name)  # (the callback queueing into its own dispatcher would wait forever)
            self._queue.append((name, doc))
            self._stats["queued"] += 1
            self._stats["max_backlog"] = max(self._stats["max_backlog"], len(self._queue))
            if self._worker is None:
                self._start_worker()
            self._cond.notify_all()

    def _wait_for_room(self, name: str) -> None:
        """Called holding the lock with the queue full: wait, never drop."""
        self._stats["full_waits"] += 1
        waits = self._stats["full_waits"]
        loud = waits == 1 or waits % 100 == 0  # a callback slower than every document must not flood the log
        if loud:
            log.warning("%s: %d documents are waiting for the callback; the RunEngine waits before queueing "
                        "the next %s document (wait %d)", self.name, len(self._queue), name, waits)
        t0 = time.perf_counter()
        self._cond.notify_all()  # the producer is waiting: let observers (tests, monitors) see it
        while len(self._queue) >= self.maxsize:
            self._cond.wait()
        log.log(logging.WARNING if loud else logging.DEBUG, "%s: the queue has room again after %.2f s",
                self.name, time.perf_counter() - t0)

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name=f"offthread-{self.name}", daemon=True)
        self._worker.start()
        _open.add(self)

    # --- the worker ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                if item is _CLOSE:
                    self._markers -= 1
                    if self._queue:  # documents came after close(): keep delivering
                        continue
                    self._worker = None
                    _open.discard(self)
                    self._cond.notify_all()
                    return
                self._in_hand = 1
                self._cond.notify_all()  # room for a waiting producer
            try:
                self._deliver(*item)
            finally:
                with self._cond:
                    self._in_hand = 0
                    self._cond.notify_all()

    def _deliver(self, name: str, doc: dict) -> None:
        try:
            self.callback(name, doc)
        except Exception as err:
            with self._cond:
                self._stats["errors"] += 1
                errors = self._stats["errors"]
            self.last_error = f"{name} document: {type(err).__name__}: {err}"
            if errors <= 10 or errors % 1000 == 0:  # a callback failing on every event must not flood the log
                log.error("%s: callback failed on a %s document (error %d): %s", self.name, name, errors,
                          self.last_error, exc_info=errors == 1)
        finally:
            with self._cond:
                self._stats["delivered"] += 1

    # --- control -----------------------------------------------------------------------
    def pending(self) -> int:
        """Documents queued and not yet handed to the callback (the one being handled is not counted)."""
        return len(self._queue) - self._markers

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every document queued so far has been delivered (or ``timeout`` seconds);
        returns the number still queued or in hand (0: all delivered)."""
        if threading.current_thread() is self._worker:
            raise RuntimeError(f"{self.name}: flush() from the callback itself would wait for itself")
        with self._cond:
            self._cond.wait_for(lambda: len(self._queue) <= self._markers and not self._in_hand, timeout)
            return self.pending() + self._in_hand

    def close(self, timeout: float | None = None) -> int:
        """Deliver the backlog, then stop the worker; returns the documents left undelivered after
        ``timeout`` (they stay queued: a later call or ``flush`` delivers them)."""
        with self._cond:
            worker = self._worker
            if worker is None:
                return len(self._queue)
            if not self._queue or self._queue[-1] is not _CLOSE:
                self._queue.append(_CLOSE)
                self._markers += 1
                self._cond.notify_all()
        worker.join(timeout)
        with self._cond:
            return self.pending() + self._in_hand

    def stats(self) -> dict:
        with self._cond:
            return {**self._stats, "pending": len(self._queue), "name": self.name}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        s = self.stats()
        return (f"OffThread({self.name!r}, delivered={s['delivered']}, pending={s['pending']}, "
                f"errors={s['errors']})")


def flush_all(timeout: float | None = None) -> int:
    """Flush every dispatcher with a running worker; returns the documents left in all of them."""
    return sum(d.flush(timeout) for d in list(_open))


@atexit.register
def _drain_at_exit() -> None:
    """Daemon workers die with the interpreter: deliver what is queued first (a scan just finished
    in IPython, then exit, must still reach the catalogue)."""
    for dispatcher in list(_open):
        left = dispatcher.close(EXIT_TIMEOUT)
        if left:
            log.error("%s: %d documents were not delivered before exit", dispatcher.name, left)
