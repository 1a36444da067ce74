"""The journal against a model of what it promises, and the edges mutation testing found untested:
segment sizes, empty and header-only records, fsync, given-back segments, a second close."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tomobluesky.transport._journal import Journal

_KEYS = st.sampled_from([None, b"", b"k", b"run-0001"])
_OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 6), _KEYS, st.integers(0, 30)),
    st.tuples(st.just("take"), st.integers(0, 7)),
    st.just(("commit",)),
    st.just(("reopen",)),
), min_size=1, max_size=40)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@settings(max_examples=80, deadline=None)
@given(ops=_OPS, segment_bytes=st.sampled_from([40, 64, 200, 1 << 20]))
def test_the_journal_behaves_like_a_queue_with_acknowledgements(ops, segment_bytes):
    """Model: ``owed`` is every record not yet committed, in order; ``unread`` how many of them
    this process has not handed out yet. A reopen hands everything owed out again."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        j = Journal(d, segment_bytes=segment_bytes)
        owed: list[tuple[int, bytes | None, bytes]] = []
        read = 0  # owed[:read] were handed out by this process
        last = None  # (record, its index in owed) of the last take
        seq = 0
        for op in ops:
            if op[0] == "append":
                _, count, key, vlen = op
                for _ in range(count):
                    value = bytes([seq % 251]) * vlen
                    j.append(seq, key, value)
                    owed.append((seq, key, value))
                    seq += 1
                assert j.max_seq == seq - 1
            elif op[0] == "take":
                got = j.take(op[1])
                want = owed[read: read + op[1]]
                assert [(r.seq, r.key, r.value) for r in got] == want
                read += len(got)
                if got:
                    last = (got[-1], read - 1)
            elif op[0] == "commit" and last is not None:
                record, index = last
                j.commit(record)
                del owed[: index + 1]
                read -= index + 1
                last = None
            elif op[0] == "reopen":
                j.close()
                j = Journal(d, segment_bytes=segment_bytes)
                read, last = 0, None
                assert j.max_seq == (owed[-1][0] if owed else -1)
            assert j.pending == len(owed) - read
            if not owed:
                assert _files(d) == [], "nothing owed, yet files remain"
        j.close()
        back = Journal(d, segment_bytes=segment_bytes)
        assert [(r.seq, r.key, r.value) for r in back.take(10_000)] == owed
        back.close()


def test_an_empty_journal_and_its_directory(tmp_path):
    j = Journal(tmp_path / "spool" / "kafka")  # parents are created
    assert j.pending == 0 and j.max_seq == -1 and j.take(5) == []
    j.append(7, None, b"v")
    assert j.max_seq == 7
    j.close()
    j.close()  # closing twice is harmless
    assert [r.seq for r in Journal(tmp_path / "spool" / "kafka").take(5)] == [7]


def test_fsync_journal_round_trips(tmp_path):
    j = Journal(tmp_path, fsync=True)
    j.append(0, b"k", b"v0")
    j.append(1, None, b"v1")
    j.flush()
    assert [(r.seq, r.key, r.value) for r in j.take(5)] == [(0, b"k", b"v0"), (1, None, b"v1")]
    j.close()


def test_a_header_only_record_survives_a_reopen(tmp_path):
    """No key, empty value: the record is its 16-byte header and nothing else, ending the file exactly."""
    j = Journal(tmp_path)
    j.append(0, b"a", b"x")
    j.append(1, None, b"")
    j.close()
    j = Journal(tmp_path)
    assert j.pending == 2 and j.max_seq == 1
    assert [(r.seq, r.key, r.value) for r in j.take(5)] == [(0, b"a", b"x"), (1, None, b"")]


def test_segments_roll_over_when_full(tmp_path):
    """Records of exactly 20 bytes (16-byte header, no key, 4-byte value)."""
    def stems(directory, segment_bytes, keys):
        j = Journal(directory, segment_bytes=segment_bytes)
        for seq, key in enumerate(keys):
            j.append(seq, key, b"abcd")
        j.close()
        return [int(p.stem) for p in sorted(directory.glob("*.seg"))]

    assert stems(tmp_path / "a", 40, [None] * 6) == [0, 2, 4]  # full at exactly 40 bytes
    assert stems(tmp_path / "b", 41, [None] * 6) == [0, 3]  # 40 < 41: a third record still fits
    assert stems(tmp_path / "c", 41, [b""] * 6) == [0, 3]  # an empty key takes no bytes
    assert stems(tmp_path / "d", 48, [b"keys"] * 6) == [0, 2, 4]  # 24-byte records with a 4-byte key


def test_dropping_a_delivered_segment_keeps_the_tail_open(tmp_path):
    j = Journal(tmp_path, segment_bytes=60)  # three 20-byte records per segment
    for seq in range(4):
        j.append(seq, None, b"abcd")
    j.commit(j.take(3)[-1])  # the first segment is delivered and deleted
    j.append(4, None, b"abcd")  # joins the tail segment, which still has room
    j.close()
    assert [p.stem for p in tmp_path.glob("*.seg")] == [f"{3:020d}"]
    assert [r.seq for r in Journal(tmp_path).take(9)] == [3, 4]


def test_reading_on_after_committing_a_whole_segment(tmp_path):
    j = Journal(tmp_path, segment_bytes=40)  # two records per segment
    for seq in range(5):
        j.append(seq, None, b"abcd")
    first = j.take(2)  # exactly the first segment
    j.commit(first[-1])
    assert [r.seq for r in j.take(10)] == [2, 3, 4]
    assert j.pending == 0


def test_commit_with_unflushed_appends_keeps_them(tmp_path):
    j = Journal(tmp_path)
    j.append(0, None, b"a")
    taken = j.take(1)
    j.append(1, None, b"b")  # buffered: not on disk yet when the commit looks at the file's size
    j.commit(taken[-1])
    assert [r.seq for r in j.take(5)] == [1]
    j.close()


def test_a_given_back_segment_is_named_after_its_lowest_seq(tmp_path):
    j = Journal(tmp_path)
    for seq in (10, 11):
        j.append(seq, b"k", b"v%d" % seq)
    j.take(2)
    j.append(13, b"k", b"v13")  # owed, not handed out
    j.write_segment([(12, None, b"v12"), (3, None, b"v3")])  # unsorted, keyless
    assert j.pending == 3
    j.close()
    j = Journal(tmp_path)
    assert [(r.seq, r.key, r.value) for r in j.take(10)] == [(3, None, b"v3"), (12, None, b"v12"),
                                                              (10, b"k", b"v10"), (11, b"k", b"v11"),
                                                              (13, b"k", b"v13")]
    j.write_segment([])  # nothing to give back: no file
    assert len(list(tmp_path.glob("*.seg"))) == 2


def test_an_empty_or_headerless_segment_after_a_crash(tmp_path):
    (tmp_path / f"{0:020d}.seg").write_bytes(b"")  # created, never written
    (tmp_path / f"{5:020d}.seg").write_bytes(b"\x00\x00\x00")  # torn inside the first header
    j = Journal(tmp_path)
    assert j.pending == 0 and j.max_seq == -1
    j.append(9, None, b"after")
    j.close()
    assert [(r.seq, r.value) for r in Journal(tmp_path).take(10)] == [(9, b"after")]


def test_no_position_file_outlives_its_segment(tmp_path):
    """A stale ``.pos`` would apply to the next segment of the same name and skip its records."""
    j = Journal(tmp_path)
    for seq in range(5):
        j.append(seq, None, b"x")
    j.commit(j.take(2)[-1])  # part of the segment: its position is written
    assert len(list(tmp_path.glob("*.pos"))) == 1
    j.commit(j.take(3)[-1])  # the rest: segment and position both go
    assert _files(tmp_path) == []
    j.close()
    j = Journal(tmp_path)  # a new process starts over at seq 0, in a segment of the same name
    assert j.max_seq == -1
    for seq in range(3):
        j.append(seq, None, b"y")
    j.close()
    assert [r.seq for r in Journal(tmp_path).take(9)] == [0, 1, 2]


def test_committing_an_earlier_record_does_not_rewind_the_reader(tmp_path):
    j = Journal(tmp_path, segment_bytes=40)  # two 20-byte records per segment
    for seq in range(6):
        j.append(seq, None, b"abcd")
    first = j.take(2)  # the whole first segment
    second = j.take(2)
    j.commit(first[-1])  # acknowledged late, after the reader moved on
    assert [r.seq for r in j.take(10)] == [4, 5]
    assert [r.seq for r in second] == [2, 3]


def test_moving_to_a_partly_delivered_segment_resumes_at_its_position(tmp_path):
    j = Journal(tmp_path)
    for seq in range(10, 14):
        j.append(seq, None, b"v%d" % seq)
    j.commit(j.take(2)[-1])  # 10 and 11 delivered
    j.write_segment([(3, None, b"v3")])  # an earlier record given back
    j.close()
    j = Journal(tmp_path)
    taken = j.take(1)
    assert [r.seq for r in taken] == [3]
    j.commit(taken[-1])  # the given-back segment is delivered and deleted
    assert [r.seq for r in j.take(10)] == [12, 13]  # not 10 and 11 again
