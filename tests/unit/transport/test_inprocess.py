"""OffThread: in-process callbacks behind a bounded queue, so the RunEngine never waits for them."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from bluesky.plans import count
from ophyd.sim import det

from tomobluesky.transport import OffThread

WAIT = 30.0  # only a guard against a hung test: nothing asserts how long anything took


def wait_until(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


class Blocked:
    """A callback that holds the first document until ``release`` is set, and records every document."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.returned = []  # (name, doc) the callback has finished with, in order

    def __call__(self, name, doc):
        self.entered.set()
        self.release.wait(WAIT)  # without the dispatcher this would hold the RunEngine up to WAIT
        self.returned.append((name, doc))


def test_a_blocked_callback_does_not_hold_the_run_engine(RE):
    emitted = []
    RE.subscribe(lambda name, doc: emitted.append((name, doc)))
    callback = Blocked()
    dispatcher = OffThread(callback, name="blocked")
    RE.subscribe(dispatcher)

    RE(count([det], num=7))

    # the whole run was emitted while the callback still held its first document
    assert [name for name, _ in emitted][-1] == "stop"
    assert callback.entered.is_set() and not callback.release.is_set() and callback.returned == []
    assert dispatcher.pending() == len(emitted) - 1  # all but the one in hand

    callback.release.set()
    assert dispatcher.flush(WAIT) == 0
    assert [(n, d["uid"]) for n, d in callback.returned] == [(n, d["uid"]) for n, d in emitted]
    assert Counter(n for n, _ in callback.returned) == {"start": 1, "descriptor": 1, "event": 7, "stop": 1}
    seq = [d["seq_num"] for n, d in callback.returned if n == "event"]
    assert seq == list(range(1, 8))
    stats = dispatcher.stats()
    assert stats["delivered"] == stats["queued"] == 10 and stats["errors"] == 0 and stats["pending"] == 0
    assert stats["max_backlog"] >= 9  # the backlog did build up behind the blocked callback
    assert dispatcher.close(WAIT) == 0


def test_exceptions_are_contained_counted_and_later_documents_still_arrive(RE, caplog):
    got = []

    def flaky(name, doc):
        if name == "event" and doc["seq_num"] in (2, 4):
            raise ValueError(f"bad event {doc['seq_num']}")
        got.append((name, doc.get("seq_num")))

    dispatcher = OffThread(flaky, name="flaky")
    RE.subscribe(dispatcher)
    with caplog.at_level(logging.ERROR, logger="tomobluesky.transport._inprocess"):
        RE(count([det], num=5))  # the RunEngine never sees the errors: the run completes
        assert dispatcher.flush(WAIT) == 0
    assert got == [("start", None), ("descriptor", None), ("event", 1), ("event", 3), ("event", 5), ("stop", None)]
    assert dispatcher.stats()["errors"] == 2 and dispatcher.stats()["delivered"] == 8
    assert dispatcher.last_error == "event document: ValueError: bad event 4"
    failures = [r for r in caplog.records if "callback failed" in r.getMessage()]
    assert len(failures) == 2 and "flaky" in failures[0].getMessage()
    dispatcher.close()


def test_flush_reports_what_is_left_then_drains():
    callback = Blocked()
    dispatcher = OffThread(callback, name="flush")
    for i in range(5):
        dispatcher("event", {"i": i})
    callback.entered.wait(WAIT)
    assert dispatcher.flush(0) == 5  # four queued and one in hand
    assert dispatcher.pending() == 4
    callback.release.set()
    assert dispatcher.flush(WAIT) == 0
    assert [d["i"] for _, d in callback.returned] == [0, 1, 2, 3, 4] and dispatcher.pending() == 0
    dispatcher.close()


def test_a_full_queue_makes_the_producer_wait_and_loses_nothing(caplog):
    callback = Blocked()
    dispatcher = OffThread(callback, maxsize=3, name="bounded")
    dispatcher("event", {"i": 0})
    callback.entered.wait(WAIT)  # the first document is in the callback's hands
    produced = [0]

    def produce():
        for i in range(1, 10):
            dispatcher("event", {"i": i})
            produced.append(i)

    producer = threading.Thread(target=produce, daemon=True)
    with caplog.at_level(logging.WARNING, logger="tomobluesky.transport._inprocess"):
        producer.start()
        wait_until(lambda: dispatcher.stats()["full_waits"] == 1, "the producer meets a full queue")
        # one document in the callback's hands, three queued, the fifth waits for room
        assert producer.is_alive() and produced == [0, 1, 2, 3] and dispatcher.pending() == 3
        assert callback.returned == []
        callback.release.set()
        producer.join(WAIT)
        assert not producer.is_alive()
        assert dispatcher.flush(WAIT) == 0
    assert [d["i"] for _, d in callback.returned] == list(range(10))
    assert dispatcher.stats()["max_backlog"] == 3 and dispatcher.stats()["full_waits"] >= 1
    assert any("bounded" in r.getMessage() and "waits" in r.getMessage() for r in caplog.records)
    dispatcher.close()


def test_one_dispatcher_serves_several_runs_across_close(RE):
    got = []
    dispatcher = OffThread(lambda name, doc: got.append(name), name="runs")
    RE.subscribe(dispatcher)
    RE(count([det], num=2))
    assert dispatcher.close(WAIT) == 0
    assert not any(t.name == "offthread-runs" for t in threading.enumerate())
    RE(count([det], num=3))  # a new worker starts with the next document
    assert dispatcher.flush(WAIT) == 0
    assert Counter(got) == {"start": 2, "descriptor": 2, "event": 5, "stop": 2}
    assert dispatcher.close(WAIT) == 0


def test_documents_queued_after_close_are_still_delivered():
    callback = Blocked()
    dispatcher = OffThread(callback, name="late")
    dispatcher("start", {"i": 0})
    callback.entered.wait(WAIT)
    assert dispatcher.close(0) == 1  # the worker is still busy: the close marker waits in the queue
    dispatcher("stop", {"i": 1})  # queued behind the marker
    callback.release.set()
    assert dispatcher.flush(WAIT) == 0
    assert [d["i"] for _, d in callback.returned] == [0, 1]
    assert dispatcher.close(WAIT) == 0


def test_pending_tells_the_callback_how_far_behind_it_is():
    seen = []
    gate = threading.Event()
    dispatcher = OffThread(lambda name, doc: (gate.wait(WAIT), seen.append(dispatcher.pending())), name="backlog")
    for i in range(4):
        dispatcher("event", {"i": i})
    gate.set()
    assert dispatcher.flush(WAIT) == 0
    assert seen == [3, 2, 1, 0]  # documents still behind the one being handled
    dispatcher.close()


def test_flush_from_the_callback_is_refused_and_counted():
    dispatcher = OffThread(lambda name, doc: dispatcher.flush(), name="self-flush")
    dispatcher("start", {})
    assert dispatcher.flush(WAIT) == 0
    assert dispatcher.stats()["errors"] == 1 and "would wait for itself" in dispatcher.last_error
    dispatcher.close()


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="callable"):
        OffThread("not a callback")
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        OffThread(print, maxsize=0)


def test_flush_all_waits_for_every_open_dispatcher():
    from tomobluesky.transport import flush_all

    first, second = Blocked(), Blocked()
    dispatchers = [OffThread(first, name="first"), OffThread(second, name="second")]
    for i in range(3):
        for d in dispatchers:
            d("event", {"i": i})
    first.entered.wait(WAIT)
    second.entered.wait(WAIT)
    assert flush_all(0) == 6  # three in each, one of them in hand
    first.release.set()
    second.release.set()
    assert flush_all(WAIT) == 0
    assert [d["i"] for _, d in first.returned] == [d["i"] for _, d in second.returned] == [0, 1, 2]
    for d in dispatchers:
        assert d.close(WAIT) == 0
