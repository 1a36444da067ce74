"""The on-disk journal: order, commit, reopen, torn writes."""

from tomobluesky.transport._journal import Journal


def _fill(j, seqs):
    for s in seqs:
        j.append(s, f"run{s % 3}".encode() if s % 5 else None, f"value-{s}".encode() * (s % 7 + 1))


def test_take_commit_and_reopen_keep_order(tmp_path):
    j = Journal(tmp_path, segment_bytes=200)  # tiny segments: many files
    _fill(j, range(100))
    assert j.pending == 100
    first = j.take(30)
    assert [r.seq for r in first] == list(range(30))
    assert first[0].key is None and first[5].key is None and first[2].key == b"run2"
    j.commit(first[-1])
    j.close()

    j = Journal(tmp_path, segment_bytes=200)  # a new process: resumes after the last commit
    assert j.pending == 70 and j.max_seq == 99
    rest = j.take(1000)
    assert [r.seq for r in rest] == list(range(30, 100))
    assert rest[-1].value == b"value-99" * (99 % 7 + 1)
    j.commit(rest[-1])
    assert list(tmp_path.glob("*.seg")) == []  # everything delivered: nothing left on disk


def test_uncommitted_records_come_back_after_a_crash(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(10))
    j.take(10)  # handed out, never acknowledged
    j.close()
    assert [r.seq for r in Journal(tmp_path).take(100)] == list(range(10))


def test_appends_while_reading(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(5))
    a = j.take(3)
    _fill(j, range(5, 8))
    b = j.take(100)
    assert [r.seq for r in a + b] == list(range(8))
    j.commit(b[-1])
    _fill(j, range(8, 10))
    assert [r.seq for r in j.take(100)] == [8, 9]


def test_torn_write_is_truncated(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(3))
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    seg.write_bytes(seg.read_bytes() + b"\x00\x00\x00")  # a crash in the middle of a header
    assert [r.seq for r in Journal(tmp_path).take(10)] == [0, 1, 2]


def test_given_back_segment_sorts_first(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(10, 13))
    j.write_segment([(5, b"k", b"v5"), (3, b"k", b"v3")])
    j.close()
    assert [r.seq for r in Journal(tmp_path).take(10)] == [3, 5, 10, 11, 12]


def _records(directory):
    j = Journal(directory)
    out = j.take(1000)
    j.close()
    return out


def test_append_after_a_torn_tail_is_read_back(tmp_path):
    """A crash tore the last record; the next process appends and a third one reads it all back."""
    j = Journal(tmp_path)
    _fill(j, range(4))
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # record 3 is cut in the middle of its value

    j = Journal(tmp_path)  # reopen: record 3 is gone, the rest is still owed
    assert j.pending == 3 and j.max_seq == 2
    _fill(j, range(10, 13))  # new records written after the torn one
    j.close()

    back = _records(tmp_path)
    assert [r.seq for r in back] == [0, 1, 2, 10, 11, 12]
    assert [r.value for r in back[3:]] == [f"value-{s}".encode() * (s % 7 + 1) for s in (10, 11, 12)]


def test_append_after_a_torn_header_in_the_same_process(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(3))
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    seg.write_bytes(seg.read_bytes() + b"\x00\x00\x00\x00\x00\x00\x00\x07\x00")  # half a header
    j = Journal(tmp_path)
    _fill(j, [7, 8])
    assert [r.seq for r in j.take(100)] == [0, 1, 2, 7, 8]
    j.close()


def test_torn_tail_after_a_partial_commit(tmp_path):
    j = Journal(tmp_path)
    _fill(j, range(6))
    j.commit(j.take(2)[-1])  # 0 and 1 delivered
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    seg.write_bytes(seg.read_bytes()[:-1])  # record 5 torn
    j = Journal(tmp_path)
    assert j.pending == 3
    _fill(j, [20])
    j.close()
    assert [r.seq for r in _records(tmp_path)] == [2, 3, 4, 20]
