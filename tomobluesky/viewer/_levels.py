"""The pyramid levels of finished volumes, as the viewer reads them from Tiled.

A complete volume never changes (the sink never writes a complete volume
twice), so what Tiled said about it is kept for a minute: each plane, zoom
step or profile then costs Tiled one request (the pixels), not three (the
volume's node, the level's node, the pixels). Entries belong to the client
they were read with, so one reader's key never answers for another's, and
Tiled still checks the key on every read of pixels.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable


class Level:
    """A pyramid level whose Tiled node is looked up only when it is first read (its shape comes
    from the volume's metadata), so a request reads the one level it needs."""

    def __init__(self, node, k: int, shape):
        self.node, self.key, self.shape = node, str(k), tuple(int(n) for n in shape)
        self._array = None

    def __getitem__(self, index):
        if self._array is None:
            self._array = self.node[self.key]
        return self._array[index]


class LevelCache:
    """``(client, key) -> value``, the ``size`` most recent, each for ``ttl`` s: the levels of complete
    volumes by scan uid (and, for :class:`LiveReads`, a refresh's live slices by scan uid and ``t``)."""

    def __init__(self, size: int = 32, ttl: float = 60.0):
        self.size, self.ttl = size, ttl
        self._entries: OrderedDict[tuple[int, Hashable], tuple[object, float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client, key: Hashable):
        with self._lock:
            entry = self._entries.get((id(client), key))
            if entry is None or entry[0] is not client or time.monotonic() > entry[1]:
                return None
            self._entries.move_to_end((id(client), key))
            return entry[2]

    def put(self, client, key: Hashable, value):
        with self._lock:
            self._entries[(id(client), key)] = (client, time.monotonic() + self.ttl, value)
            self._entries.move_to_end((id(client), key))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


class LiveReads:
    """One read of a scan's live slices for the three images of one page refresh.

    The page asks for the axial and the two vertical slices at once, with the same ``t``. Read one by
    one, each costs Tiled two requests; here the first reads all three (two requests) and the others,
    which wait for it, get the same arrays. Entries are per reader's client (so one reader's read is
    never shown to another), the ``size`` most recent, each for ``ttl`` seconds."""

    def __init__(self, size: int = 64, ttl: float = 10.0):
        self._kept = LevelCache(size, ttl)
        self._reading: dict[tuple, threading.Lock] = {}  # reads in flight, by (client, uid, stamp)
        self._lock = threading.Lock()

    def get(self, client, uid: str, stamp: str, read) -> dict:
        """The slices ``read()`` gave for this (client, uid, stamp), reading them once."""
        key = (id(client), uid, stamp)
        with self._lock:
            busy = self._reading.setdefault(key, threading.Lock())
        with busy:  # a second image of the same refresh waits for the first one's read
            try:
                slices = self._kept.get(client, (uid, stamp))
                if slices is None:
                    slices = self._kept.put(client, (uid, stamp), read())
            finally:  # those waiting hold the lock already; later ones find the slices kept (or read again)
                with self._lock:
                    if self._reading.get(key) is busy:
                        del self._reading[key]
        return slices
