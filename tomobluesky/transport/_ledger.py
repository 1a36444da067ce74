"""Which offsets of a partition may be committed: the rule behind commit-when-durable.

An offset becomes committable once its run is finished; the committable offset of a
partition is the first offset whose run is not (or the next offset to read).
"""

from __future__ import annotations

from collections import deque


class Ledger:
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
