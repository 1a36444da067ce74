"""``LiveReads``: the three images of one page refresh share one read, and nothing else shares it."""

import threading
import time

import pytest

from tomobluesky.viewer._levels import LiveReads


class Reader:
    """Stands for a reader's Tiled client: only its identity matters to the cache."""


def test_one_read_per_client_scan_and_refresh_and_never_across_readers():
    cache, reads = LiveReads(), []

    def read(tag):
        def go():
            reads.append(tag)
            return {"axial": tag}
        return go

    alice, bob = Reader(), Reader()
    assert cache.get(alice, "scan", "1", read("a1"))["axial"] == "a1"
    assert cache.get(alice, "scan", "1", read("again"))["axial"] == "a1"  # same refresh: kept
    assert cache.get(bob, "scan", "1", read("b1"))["axial"] == "b1"  # another reader reads for himself
    assert cache.get(alice, "scan", "2", read("a2"))["axial"] == "a2"  # a new refresh reads again
    assert cache.get(alice, "other", "1", read("o1"))["axial"] == "o1"
    assert reads == ["a1", "b1", "a2", "o1"]


def test_the_images_of_a_refresh_asked_at_once_wait_for_one_read():
    cache, reads, started = LiveReads(), [], threading.Event()

    def slow():
        reads.append(1)
        started.set()
        time.sleep(0.2)
        return {"axial": 1}

    reader, results = Reader(), []
    threads = [threading.Thread(target=lambda: results.append(cache.get(reader, "s", "t", slow))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads == [1] and results == [{"axial": 1}] * 3


def test_entries_expire_and_the_oldest_go_first_and_a_failed_read_keeps_nothing():
    cache, reads = LiveReads(size=2, ttl=0.2), []
    reader = Reader()

    def read():
        reads.append(1)
        return {}

    for stamp in ("1", "2", "3"):
        cache.get(reader, "s", stamp, read)
    cache.get(reader, "s", "1", read)  # pushed out by "3": read again
    assert len(reads) == 4
    time.sleep(0.25)
    cache.get(reader, "s", "1", read)  # expired: read again
    assert len(reads) == 5

    def failing():
        raise OSError("Tiled went away")

    with pytest.raises(OSError):
        cache.get(reader, "s", "9", failing)
    assert cache.get(reader, "s", "9", read) == {} and len(reads) == 6
