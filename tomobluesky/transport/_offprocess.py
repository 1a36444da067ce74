"""In-process callbacks moved into a child process, so they stop sharing the RunEngine's GIL.

:class:`~tomobluesky.transport.OffThread` already keeps the RunEngine from waiting on a callback, but
the callback's Python still runs in the RunEngine's process and takes the GIL (and a core) from it:
issue 11 measured the scan 38-52 % slower with the live pipeline subscribed. :class:`OffProcess` has the
same interface, and runs the callback in a child process instead:

    RE.subscribe(OffProcess(make_router, {"tiled_uri": uri}, name="live"))

- The callback is built *in the child* by ``factory(**kwargs)``: a top-level (importable) function and
  picklable arguments, never a live object (a Tiled client, an open file, a figure).
- ``self(name, doc)`` pickles the document (about 2 µs for an event, protocol 5; msgpack was no faster
  to encode and slower to decode, and turns tuples into lists) and writes it to a pipe. Pixels never
  ride in documents: StreamResource/StreamDatum point to the detector's HDF5 file, which the child
  reads, as the live path always has.
- The child has a reader thread that empties the pipe at once into its own queue, so a write from the
  RunEngine only waits for the system call; the child's main thread hands documents to the callback in
  order. It acknowledges what it delivered (in batches) on a second pipe.
- At most ``maxsize`` documents are in flight (sent, not acknowledged). When that many are, the
  RunEngine waits, with a warning in the log: bounded, nothing dropped.
- An exception from the callback is counted, sent back and logged here; the next document is still
  delivered.
- If the child dies (killed, crashed, its factory failed), the parent says so in the log, naming the
  dispatcher, the child's pid and exit code, and keeps every document the child had not acknowledged,
  and every later one, in ``undelivered()``; ``flush`` and ``close`` raise :class:`ChildProcessDied`.
  The RunEngine is never interrupted by it: the scan goes on and its detector file is complete.
  ``take_undelivered()`` hands the kept documents over, and the next document starts a new child.
- ``close()`` drains the child and lets it exit; a later document starts a new child (with a callback
  freshly built by the factory). At interpreter exit open dispatchers are drained.
- Code running in the child can ask :func:`child_backlog` (documents waiting for its callback) and
  send small picklable values back with :func:`report` (the parent's ``on_report`` receives them).

The child is started with the ``forkserver`` method where there is one (else ``spawn``): forking the
RunEngine's process itself, which has threads and HDF5 state, is unsafe.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import pickle
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)

#: how long the interpreter waits at exit for each dispatcher's child to drain before terminating it
EXIT_TIMEOUT = 60.0
_DOC, _CLOSE = b"D", b"C"  # first byte of each message on the document pipe
_open: weakref.WeakSet = weakref.WeakSet()  # dispatchers with a child that may hold documents


class ChildProcessDied(RuntimeError):
    """The child process of an :class:`OffProcess` ended without delivering every document."""


def default_context() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class OffProcess:
    """Deliver ``(name, doc)`` to ``factory(**kwargs)``'s callback in a child process, in order.

    See the module's docstring. ``stats()`` has the same keys as :class:`OffThread`'s (``queued``,
    ``delivered``, ``errors``, ``max_backlog``, ``full_waits``, ``pending``, ``name``) plus ``pid``,
    ``exitcode`` and ``undelivered``. ``on_report(value)`` is called on the parent's reader thread for
    each :func:`report` from the child. ``nice`` (Linux niceness, 0-19) lowers the child's CPU priority:
    where cores are few, the scan gets the CPU first and the callback the rest. ``idle`` runs the child
    under the ``SCHED_IDLE`` policy (Linux), which also gives a waking RunEngine thread the core at once
    (see :mod:`tomobluesky._priority`): the child then runs only on CPU time nothing else wants.
    """

    def __init__(self, factory: Callable[..., Callable[[str, dict], Any]], kwargs: dict | None = None, *,
                 maxsize: int = 20_000, name: str | None = None, context: str | None = None,
                 on_report: Callable[[Any], object] | None = None, start: bool = True, nice: int = 0,
                 idle: bool = False):
        if not callable(factory):
            raise TypeError(f"OffProcess needs a factory that returns the callback, got {type(factory).__name__}")
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.name = name or getattr(factory, "__name__", type(factory).__name__)
        try:  # fail here, with the reason, not in the child's start
            self._recipe = pickle.dumps((factory, dict(kwargs or {})), protocol=5)
        except Exception as err:
            raise TypeError(f"{self.name}: the factory and its kwargs must be picklable (a top-level function "
                            f"and plain arguments, not live objects): {type(err).__name__}: {err}") from None
        self.maxsize = int(maxsize)
        self.on_report = on_report
        self.nice = int(nice)
        self.idle = bool(idle)
        self._ctx = multiprocessing.get_context(context or default_context())
        self._cond = threading.Condition()
        self._child = None  # the current _Child, None when not started (or closed)
        self._unacked: deque = deque()  # payloads sent to the current child, not yet acknowledged
        self._kept: list = []  # payloads a dead child never acknowledged, and those that came after
        self._dead: str | None = None  # why the last child died, until take_undelivered()
        self._stats = {"queued": 0, "delivered": 0, "errors": 0, "max_backlog": 0, "full_waits": 0}
        self.last_error: str | None = None
        self.last_exitcode: int | None = None
        self._factory_error: str | None = None
        if start:
            with self._cond:
                self._start_child()

    # --- the RunEngine's side --------------------------------------------------------
    def __call__(self, name: str, doc: dict) -> None:
        payload = _DOC + pickle.dumps((name, doc), protocol=5)
        with self._cond:
            self._stats["queued"] += 1
            if self._dead is None and self._child is not None and self._child.closing:
                self._wait_closed()  # rare: a document after close(): the old child finishes first
            if self._dead is None and len(self._unacked) >= self.maxsize:
                self._wait_for_room(name)
            if self._dead is not None:
                self._keep(payload)
                return
            if self._child is None:
                self._start_child()
            try:
                self._child.doc_conn.send_bytes(payload)
            except OSError:  # the child's end is gone: it died; the reader thread says how
                self._keep(payload)
                return
            self._unacked.append(payload)
            self._stats["max_backlog"] = max(self._stats["max_backlog"], len(self._unacked))

    def _keep(self, payload: bytes) -> None:
        self._kept.append(payload)
        n = len(self._kept)
        if n == 1 or n % 1000 == 0:
            log.error("%s: no child process to deliver to (%s); %d documents are kept undelivered", self.name,
                      self._dead or "its pipe is closed", n)

    def _wait_for_room(self, name: str) -> None:
        """Called holding the lock with ``maxsize`` documents in flight: wait, never drop."""
        self._stats["full_waits"] += 1
        waits = self._stats["full_waits"]
        loud = waits == 1 or waits % 100 == 0
        if loud:
            log.warning("%s: %d documents are waiting for the child process; the RunEngine waits before "
                        "sending the next %s document (wait %d)", self.name, len(self._unacked), name, waits)
        t0 = time.perf_counter()
        self._cond.notify_all()
        while len(self._unacked) >= self.maxsize and self._dead is None:
            self._cond.wait()
        log.log(logging.WARNING if loud else logging.DEBUG, "%s: room again after %.2f s", self.name,
                time.perf_counter() - t0)

    def _wait_closed(self) -> None:
        while self._child is not None and self._dead is None:
            self._cond.wait()

    # --- the child's lifetime -----------------------------------------------------------
    def _start_child(self) -> None:
        self._child = _Child.start(self._ctx, self._recipe, self.name, self.nice, self.idle)
        self._unacked.clear()
        self._factory_error = None
        threading.Thread(target=self._read_acks, args=(self._child,), name=f"offprocess-{self.name}",
                         daemon=True).start()
        _open.add(self)
        _register_exit_drain()

    def _read_acks(self, child: "_Child") -> None:
        """The parent's reader thread: acknowledgements, errors and reports from one child, until it ends."""
        finished = False
        while True:
            try:
                message = child.ack_conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "ack":
                self._acknowledge(message[1])
            elif kind == "error":
                self._child_error(*message[1:])
            elif kind == "report" and self.on_report is not None:
                try:
                    self.on_report(message[1])
                except Exception:
                    log.exception("%s: on_report failed", self.name)
            elif kind == "failed":  # the factory raised: the child exits
                self._factory_error = message[1].splitlines()[0]
                log.error("%s: the callback's factory failed in the child process: %s", self.name, message[1])
            elif kind == "ready":
                child.ready.set()
            elif kind == "closed":
                finished = True
        child.process.join()
        self._child_ended(child, finished)

    def _acknowledge(self, count: int) -> None:
        with self._cond:
            for _ in range(count):
                self._unacked.popleft()
            self._stats["delivered"] += count
            self._cond.notify_all()

    def _child_error(self, errors: int, text: str, trace: str | None) -> None:
        with self._cond:
            self._stats["errors"] += 1
            self.last_error = text
        if errors <= 10 or errors % 1000 == 0:
            log.error("%s: callback failed in the child process (error %d): %s%s", self.name, errors, text,
                      f"\n{trace}" if trace else "")

    def _child_ended(self, child: "_Child", finished: bool) -> None:
        with self._cond:
            self.last_exitcode = child.process.exitcode
            child.ack_conn.close()
            child.doc_conn.close()
            if self._child is child:
                self._child = None
            if not finished or self._unacked:
                code = _exit_text(child.process.exitcode)
                self._dead = f"child process {child.process.pid} exited unexpectedly ({code})"
                if self._factory_error:
                    self._dead += f": its factory failed: {self._factory_error}"
                self._kept[:0] = list(self._unacked)  # oldest first, before any sent after the death
                self._unacked.clear()
                log.error("%s: %s; %d documents were not delivered and are kept (undelivered())", self.name,
                          self._dead, len(self._kept))
            else:
                _open.discard(self)
            self._cond.notify_all()

    # --- control -----------------------------------------------------------------------
    def pending(self) -> int:
        """Documents sent and not yet acknowledged by the child (including the one in its callback's
        hands), plus any kept after the child died."""
        return len(self._unacked) + len(self._kept)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until the child has delivered every document sent so far (or ``timeout`` seconds); returns
        the number still in flight. Raises :class:`ChildProcessDied` if the child died with documents."""
        with self._cond:
            self._cond.wait_for(lambda: not self._unacked or self._dead is not None, timeout)
            self._raise_if_dead()
            return len(self._unacked)

    def close(self, timeout: float | None = None) -> int:
        """Deliver the backlog and let the child exit; returns the documents still in flight after
        ``timeout`` (the child goes on delivering them). Raises :class:`ChildProcessDied` if it died."""
        with self._cond:
            child = self._child
            if child is not None and not child.closing:
                child.closing = True
                try:
                    child.doc_conn.send_bytes(_CLOSE)
                except OSError:
                    pass  # already dead: the reader thread reports it
        with self._cond:
            self._cond.wait_for(lambda: child is None or self._child is not child, timeout)
            self._raise_if_dead()
            return len(self._unacked)

    def _raise_if_dead(self) -> None:
        if self._dead is not None:
            raise ChildProcessDied(f"{self.name}: {self._dead}; {len(self._kept)} documents were not delivered "
                                   f"(OffProcess.undelivered() has them)")

    def undelivered(self) -> list[tuple[str, dict]]:
        """The documents a dead child never acknowledged, and those sent after it died, in order."""
        with self._cond:
            return [pickle.loads(p[1:]) for p in self._kept]

    def take_undelivered(self) -> list[tuple[str, dict]]:
        """After a child died: forget its undelivered documents (returned), so that the next document
        starts a new child. The caller decides what to do with them (a new child would see a run's
        middle without its start)."""
        with self._cond:
            kept = [pickle.loads(p[1:]) for p in self._kept]
            self._kept.clear()
            self._dead = None
            _open.discard(self)
            return kept

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the child has built its callback (imports, clients): a benchmark or a scan that
        must not share the CPU with a starting child waits here. False after ``timeout`` or with no child;
        raises :class:`ChildProcessDied` if the child died first (its factory failed, say)."""
        child = self._child
        if child is None:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while not child.ready.wait(0.05):
            if child.process.exitcode is not None:
                with self._cond:  # the reader thread records why; then say it
                    while self._child is child:
                        self._cond.wait(0.1)
                    self._raise_if_dead()
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def stats(self) -> dict:
        with self._cond:
            child = self._child
            return {**self._stats, "pending": len(self._unacked), "name": self.name,
                    "pid": child.process.pid if child else None, "exitcode": self.last_exitcode,
                    "undelivered": len(self._kept)}

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        s = self.stats()
        return (f"OffProcess({self.name!r}, pid={s['pid']}, delivered={s['delivered']}, pending={s['pending']}, "
                f"errors={s['errors']}, undelivered={s['undelivered']})")


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


class _Child:
    """One child process and the parent's ends of its two pipes."""

    def __init__(self, process, doc_conn, ack_conn):
        self.process, self.doc_conn, self.ack_conn = process, doc_conn, ack_conn
        self.closing = False
        self.ready = threading.Event()  # the factory has built the callback

    @classmethod
    def start(cls, ctx, recipe: bytes, name: str, nice: int = 0, idle: bool = False) -> "_Child":
        doc_r, doc_w = ctx.Pipe(duplex=False)
        _widen(doc_w)
        ack_r, ack_w = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_child_main, args=(recipe, doc_r, ack_w, name, nice, idle),
                              name=f"offprocess-{name}")
        process.start()
        doc_r.close()  # the child's ends: closed here, so that the child's death shows as EOF / a broken pipe
        ack_w.close()
        return cls(process, doc_w, ack_r)


#: bytes the document pipe holds before a write waits (Linux's default is 64 KiB, about a hundred documents:
#: a child at nice 10 on a busy 2-core host can be off the CPU longer than a fast scan takes to fill that)
PIPE_BYTES = 1 << 20


def _widen(conn) -> None:
    """Give the pipe behind ``conn`` PIPE_BYTES of buffer where the system allows (Linux; else as it is)."""
    import fcntl

    try:
        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError as err:  # above /proc/sys/fs/pipe-max-size, or not a pipe: the default buffer
        log.debug("document pipe keeps its default buffer: %s", err)


# --- the child's side ------------------------------------------------------------------
_in_child: dict = {}  # set in the child process: its queue and the connection back to the parent


def child_backlog() -> int:
    """In the child process: documents received and waiting for the callback (0 elsewhere). The live
    path asks it to decide whether it is behind."""
    queue = _in_child.get("queue")
    return len(queue) if queue is not None else 0


def report(value: Any) -> None:
    """In the child process: send ``value`` (small, picklable) to the parent's ``on_report``."""
    send = _in_child.get("send")
    if send is None:
        raise RuntimeError("report() is for code running in an OffProcess child")
    send(("report", value))


def _child_main(recipe: bytes, doc_conn, ack_conn, name: str, nice: int = 0, idle: bool = False) -> None:
    import os
    import signal

    if nice or idle:
        from .._priority import lower_priority

        # every thread, not just this one: importing NumPy already started OpenBLAS's workers, which
        # would otherwise do the callback's array work at full priority; later threads inherit it
        lower_priority(os.getpid(), nice, idle=idle)

    # Ctrl-C reaches the whole process group: the parent decides when the child ends (close, or its
    # pipe's end of file), so that a scan stopped by Ctrl-C still has its last documents delivered
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    queue: deque = deque()
    cond = threading.Condition()
    send_lock = threading.Lock()

    def send(message):
        with send_lock:
            ack_conn.send(message)

    _in_child.update(queue=queue, send=send)
    threading.Thread(target=_child_reader, args=(doc_conn, queue, cond), daemon=True).start()
    try:
        factory, kwargs = pickle.loads(recipe)
        callback = factory(**kwargs)
    except BaseException as err:
        import traceback

        send(("failed", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
        raise SystemExit(3)
    send(("ready",))
    _ChildLoop(callback, queue, cond, send).run()
    try:
        send(("closed",))
    except OSError:  # the parent is gone (it was killed): nothing to tell
        pass


def _child_reader(doc_conn, queue: deque, cond: threading.Condition) -> None:
    """Empty the document pipe into the queue as fast as it fills: the parent's write never waits on
    the callback. End of file (the parent died) counts as a close."""
    while True:
        try:
            data = doc_conn.recv_bytes()
        except (EOFError, OSError):
            data = _CLOSE
        with cond:
            queue.append(data)
            cond.notify()
        if data == _CLOSE:
            return


class _ChildLoop:
    ACK_EVERY = 100  # documents
    ACK_IDLE = 0.02  # s: a quiet queue acknowledges after this, so a flush in the parent returns soon

    def __init__(self, callback, queue, cond, send):
        self.callback, self.queue, self.cond, self.send = callback, queue, cond, send
        self.unacked = 0
        self.errors = 0
        self.last_ack = time.monotonic()

    def run(self) -> None:
        while True:
            data = self._next()
            if data == _CLOSE:
                self._ack()
                return
            self._deliver(*pickle.loads(data[1:]))
            self.unacked += 1
            if self.unacked >= self.ACK_EVERY or time.monotonic() - self.last_ack > 0.1:
                self._ack()

    def _next(self) -> bytes:
        with self.cond:
            if not self.queue and self.unacked:
                self.cond.wait(self.ACK_IDLE)
                if not self.queue:
                    self._ack()
            while not self.queue:
                self.cond.wait()
            return self.queue.popleft()

    def _ack(self) -> None:
        if self.unacked:
            self.send(("ack", self.unacked))
            self.unacked = 0
        self.last_ack = time.monotonic()

    def _deliver(self, name: str, doc: dict) -> None:
        try:
            self.callback(name, doc)
        except Exception as err:
            import traceback

            self.errors += 1
            self._ack()  # the parent's counts stay in step with the error it logs
            trace = traceback.format_exc() if self.errors == 1 else None
            self.send(("error", self.errors, f"{name} document: {type(err).__name__}: {err}", trace))


def flush_all(timeout: float | None = None) -> int:
    """Flush every dispatcher with a running child; returns the documents left in all of them."""
    return sum(d.flush(timeout) for d in list(_open))


_exit_drain_registered = []


def _register_exit_drain() -> None:
    """Register the drain at exit once, after multiprocessing's own exit hook (registered when a child
    first starts): hooks run last-in first-out, and multiprocessing's joins every child, which would wait
    forever for a child that was never told to close."""
    if not _exit_drain_registered:
        atexit.register(_drain_at_exit)
        _exit_drain_registered.append(True)


def _drain_at_exit() -> None:
    """Documents queued for a child at exit (a scan just finished in IPython, then exit) still reach
    the callback; a child that does not finish in ``EXIT_TIMEOUT`` is terminated."""
    for dispatcher in list(_open):
        try:
            left = dispatcher.close(EXIT_TIMEOUT)
        except ChildProcessDied as err:
            log.error("%s", err)
            continue
        child = dispatcher._child
        if left and child is not None:
            log.error("%s: %d documents were not delivered before exit; terminating the child", dispatcher.name,
                      left)
            child.process.terminate()
