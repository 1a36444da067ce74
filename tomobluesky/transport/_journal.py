"""An append-only on-disk journal of messages that could not be sent yet.

Segments ``<first seq>.seg`` hold records ``>QII`` (seq, key length, value length)
+ key + value; ``<first seq>.pos`` remembers how far a segment has been
delivered. Records are read back in seq order; a segment is deleted once every
record in it is delivered, so the directory is empty when nothing is owed.
A crash replays from the last persisted position: at-least-once, never lost.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">QII")
_NO_KEY = 0xFFFFFFFF


@dataclass
class Record:
    seq: int
    key: bytes | None
    value: bytes
    segment: Path
    end: int  # byte offset just past this record


class Journal:
    def __init__(self, directory: str | Path, *, segment_bytes: int = 16 << 20, fsync: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._tail: Path | None = None
        self._tail_file = None
        self._tail_size = 0
        self.pending = 0  # records written and not yet handed out by take()
        self.max_seq = -1
        self._read_segment: Path | None = None
        self._read_offset = 0
        self._scan()

    # --- on-disk state ----------------------------------------------------------------------
    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"), key=lambda p: int(p.stem))

    def _committed(self, segment: Path) -> int:
        try:
            return int(segment.with_suffix(".pos").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _scan(self) -> None:
        for seg in self.segments():
            data = seg.read_bytes()
            offset = self._committed(seg)
            good = 0
            pos = 0
            while pos + _HEADER.size <= len(data):
                seq, klen, vlen = _HEADER.unpack_from(data, pos)
                size = _HEADER.size + (0 if klen == _NO_KEY else klen) + vlen
                if pos + size > len(data):
                    break  # torn write at the end: the record was never acknowledged to anyone
                self.max_seq = max(self.max_seq, seq)
                if pos >= offset:
                    self.pending += 1
                pos += size
                good = pos
            if good < len(data):
                with open(seg, "r+b") as f:
                    f.truncate(good)
        segs = self.segments()
        if segs:
            self._read_segment = segs[0]
            self._read_offset = self._committed(segs[0])

    # --- writing ----------------------------------------------------------------------------
    def append(self, seq: int, key: bytes | None, value: bytes) -> None:
        if self._tail_file is None or self._tail_size >= self.segment_bytes:
            self._open_tail(seq)
        klen = _NO_KEY if key is None else len(key)
        self._tail_file.write(_HEADER.pack(seq, klen, len(value)) + (key or b"") + value)
        self._tail_size += _HEADER.size + (key and len(key) or 0) + len(value)
        self.pending += 1
        self.max_seq = max(self.max_seq, seq)

    def flush(self) -> None:
        if self._tail_file is not None:
            self._tail_file.flush()
            if self.fsync:
                os.fsync(self._tail_file.fileno())

    def _open_tail(self, seq: int) -> None:
        if self._tail_file is not None:
            self._tail_file.close()
        self._tail = self.directory / f"{seq:020d}.seg"
        self._tail_file = open(self._tail, "ab")
        self._tail_size = self._tail.stat().st_size
        if self._read_segment is None:
            self._read_segment, self._read_offset = self._tail, 0

    def write_segment(self, records: list[tuple[int, bytes | None, bytes]]) -> None:
        """Write ``records`` (sorted by seq) as their own segment: used to give back messages
        that were handed to the producer but not delivered, ahead of everything later."""
        if not records:
            return
        records = sorted(records)
        path = self.directory / f"{records[0][0]:020d}.seg"
        with open(path, "ab") as f:
            for seq, key, value in records:
                f.write(_HEADER.pack(seq, _NO_KEY if key is None else len(key), len(value)) + (key or b"") + value)
            f.flush()
            os.fsync(f.fileno())
        self.pending += len(records)

    # --- reading back -----------------------------------------------------------------------
    def take(self, n: int) -> list[Record]:
        """Up to ``n`` records after the read position, in seq order. The read position
        advances; nothing is committed until :meth:`commit`."""
        self.flush()
        out: list[Record] = []
        while len(out) < n and self._read_segment is not None:
            seg = self._read_segment
            size = seg.stat().st_size if seg.exists() else 0
            if self._read_offset >= size:
                nxt = self._next_segment(seg)
                if nxt is None:
                    break
                self._read_segment, self._read_offset = nxt, self._committed(nxt)
                continue
            with open(seg, "rb") as f:
                f.seek(self._read_offset)
                data = f.read(size - self._read_offset)
            pos = 0
            while len(out) < n and pos + _HEADER.size <= len(data):
                seq, klen, vlen = _HEADER.unpack_from(data, pos)
                kl = 0 if klen == _NO_KEY else klen
                size_rec = _HEADER.size + kl + vlen
                if pos + size_rec > len(data):
                    break
                key = None if klen == _NO_KEY else bytes(data[pos + _HEADER.size: pos + _HEADER.size + kl])
                value = bytes(data[pos + _HEADER.size + kl: pos + size_rec])
                pos += size_rec
                out.append(Record(seq, key, value, seg, self._read_offset + pos))
            self._read_offset += pos
            if pos == 0:
                break
        self.pending -= len(out)
        return out

    def _next_segment(self, seg: Path) -> Path | None:
        later = [s for s in self.segments() if int(s.stem) > int(seg.stem)]
        return later[0] if later else None

    def commit(self, record: Record) -> None:
        """Everything up to and including ``record`` is delivered."""
        for seg in self.segments():
            if int(seg.stem) >= int(record.segment.stem):
                break
            self._drop(seg)  # earlier segments are entirely delivered
        seg = record.segment
        if record.end >= seg.stat().st_size and (seg != self._tail or self.pending == 0):
            self._drop(seg)
            if self._read_segment == seg:
                segs = self.segments()
                self._read_segment = segs[0] if segs else None
                self._read_offset = self._committed(segs[0]) if segs else 0
        else:
            seg.with_suffix(".pos").write_text(str(record.end))

    def _drop(self, seg: Path) -> None:
        if seg == self._tail and self._tail_file is not None:
            self._tail_file.close()
            self._tail_file, self._tail, self._tail_size = None, None, 0
        seg.unlink(missing_ok=True)
        seg.with_suffix(".pos").unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()
        if self._tail_file is not None:
            self._tail_file.close()
            self._tail_file = None
