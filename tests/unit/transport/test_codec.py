"""The msgpack codec: numpy-aware, explicit, compatible with msgpack-numpy's layout."""

import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tomobluesky.transport import CodecError, pack, unpack


def test_real_documents_round_trip(RE, documents):
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    RE(count([det], 5))
    for name, doc in documents:
        back_name, back = unpack(pack(name, doc))
        assert back_name == name
        assert back == msgpack.unpackb(msgpack.packb(doc, use_bin_type=True), raw=False)  # tuples become lists


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.uint16, np.int64, np.bool_, np.complex64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_arrays_round_trip_with_dtype_and_shape(arr):
    _, doc = unpack(pack("event", {"data": {"img": arr}}))
    out = doc["data"]["img"]
    assert isinstance(out, np.ndarray) and out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("scalar", [np.float32(1.5), np.float16(0.5), np.int8(-7), np.int16(-3),
                                    np.int32(-70000), np.int64(-(2**40)), np.uint8(200), np.uint16(65000),
                                    np.uint32(4_000_000_000), np.uint64(2**63 + 5), np.complex64(1 - 2j),
                                    np.bool_(True), np.bool_(False)],
                         ids=lambda s: f"{s.dtype}-{s}")
def test_numpy_scalars_keep_their_dtype_and_value(scalar):
    _, doc = unpack(pack("event", {"s": scalar}))
    out = doc["s"]
    assert isinstance(out, np.generic) and not isinstance(out, np.ndarray)  # a scalar, not a 0-d array
    assert out.dtype == scalar.dtype, (out.dtype, scalar.dtype)
    assert out == scalar


def test_float64_scalars_come_back_as_exact_floats():
    # np.float64 subclasses float, so msgpack writes it as a plain float64: nothing is lost
    _, doc = unpack(pack("event", {"s": np.float64(-2.25) / 3}))
    assert doc["s"] == np.float64(-2.25) / 3 and np.asarray(doc["s"]).dtype == np.float64


def test_scalars_of_several_dtypes_in_one_document():
    _, doc = unpack(pack("event", {"x": np.float32(1.5), "n": np.int16(-3), "b": np.bool_(True)}))
    assert (doc["x"].dtype, doc["n"].dtype, doc["b"].dtype) == (np.float32, np.int16, np.bool_)
    assert doc["x"] == 1.5 and doc["n"] == -3 and doc["b"] == True  # noqa: E712 (a numpy bool)


def test_non_contiguous_arrays():
    arr = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(unpack(pack("event", {"a": arr}))[1]["a"], arr)


def test_readable_by_msgpack_numpy():
    m = pytest.importorskip("msgpack_numpy")
    arr = np.arange(6, dtype=">u2").reshape(2, 3)
    name, doc = msgpack.unpackb(pack("event", {"a": arr, "s": np.float64(2.0)}), object_hook=m.decode, raw=False)
    np.testing.assert_array_equal(doc["a"], arr)
    assert doc["s"] == 2.0
    # and we read theirs
    theirs = msgpack.packb(["event", {"a": arr}], default=m.encode, use_bin_type=True)
    np.testing.assert_array_equal(unpack(theirs)[1]["a"], arr)


def test_object_arrays_and_unknown_types_are_refused():
    with pytest.raises(CodecError, match=r"^object arrays cannot be sent \(msgpack-numpy would pickle them\)$"):
        pack("event", {"a": np.array([object()])})
    with pytest.raises(CodecError, match=r"^cannot encode 'object' in a document$"):
        pack("event", {"a": object()})


def test_garbage_is_a_codec_error():
    with pytest.raises(CodecError, match=r"^undecodable msgpack: FormatError"):  # names msgpack's own error
        unpack(b"\xc1\x00garbage")
    with pytest.raises(CodecError):
        unpack(b"\x92\xa5event")  # truncated


def test_pickled_object_arrays_are_refused():
    evil = msgpack.packb({b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"cos\nsystem\n"},
                         use_bin_type=True)
    with pytest.raises(CodecError):
        unpack(evil)


# A VALID malicious pickle: unpickling a _Trap calls _spring(), which records that it ran.
# If the codec ever unpickled network input, the call would show in _SPRUNG.
_SPRUNG: list[str] = []


def _spring(tag):
    _SPRUNG.append(tag)
    return tag


class _Trap:
    def __init__(self, tag):
        self.tag = tag

    def __reduce__(self):
        return (_spring, (self.tag,))


def _object_array_payload(tag):
    """What msgpack-numpy puts on the wire for an object array: kind b"O", data = the array's pickle."""
    arr = np.empty(1, dtype=object)
    arr[0] = _Trap(tag)
    data = pickle.dumps(arr, protocol=pickle.HIGHEST_PROTOCOL)
    # the payload really is a working exploit: plain pickle.loads springs the trap
    pickle.loads(data)
    assert _SPRUNG == [tag]
    _SPRUNG.clear()
    return {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": data}


def test_a_valid_malicious_pickle_in_an_object_array_is_refused_unexecuted():
    _SPRUNG.clear()
    evil = msgpack.packb(["event", {"data": {"img": _object_array_payload("array")}}], use_bin_type=True)
    with pytest.raises(CodecError, match=r"^bad numpy payload: refusing a pickled object array$"):
        unpack(evil)
    assert _SPRUNG == []


def test_a_malicious_pickle_without_the_kind_marker_is_refused_unexecuted():
    _SPRUNG.clear()
    payload = _object_array_payload("no kind")
    del payload[b"kind"]  # only the dtype says "object"
    with pytest.raises(CodecError):
        unpack(msgpack.packb(["event", {"a": payload}], use_bin_type=True))
    scalar = {b"nd": False, b"type": "|O", b"data": payload[b"data"]}  # the scalar layout
    with pytest.raises(CodecError):
        unpack(msgpack.packb(["event", {"a": scalar}], use_bin_type=True))
    assert _SPRUNG == []


def test_msgpack_numpy_object_arrays_are_refused_unexecuted():
    """The real thing: an object array as msgpack-numpy itself encodes it."""
    m = pytest.importorskip("msgpack_numpy")
    _SPRUNG.clear()
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = _Trap("m0"), _Trap("m1")
    wire = msgpack.packb(["event", {"a": arr}], default=m.encode, use_bin_type=True)
    with pytest.raises(CodecError):
        unpack(wire)
    assert _SPRUNG == []


def test_immune_to_msgpack_numpy_patch():
    """bluesky-kafka calls msgpack_numpy.patch() on import; our codec must not change (or unpickle)."""
    import subprocess
    import sys

    pytest.importorskip("msgpack_numpy")
    code = """
import msgpack, msgpack_numpy, numpy as np
from tomobluesky.transport import pack, unpack, CodecError
before = pack("event", {"a": np.arange(3.0)})
msgpack_numpy.patch()
assert pack("event", {"a": np.arange(3.0)}) == before
evil = msgpack.packb({b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"x"})
try:
    unpack(evil)
except CodecError:
    print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# --- msgpack-numpy's layout, structured arrays, and the other types a document may hold ----------------------

STRUCTURED = np.dtype([("x", "<f8"), ("n", "<i2"), ("pair", "<u4", (2,)), ("tag", "S3")])


def _structured():
    arr = np.zeros(3, dtype=STRUCTURED)
    arr["x"] = [1.5, -2.0, 3.25]
    arr["n"] = [-1, 2, 300]
    arr["pair"] = [[1, 2], [3, 4], [5, 6]]
    arr["tag"] = [b"abc", b"de", b"f"]
    return arr


def test_structured_arrays_round_trip_with_their_fields():
    arr = _structured()
    _, doc = unpack(pack("event", {"table": arr, "grid": arr.reshape(3, 1)}))
    for key, want in (("table", arr), ("grid", arr.reshape(3, 1))):
        out = doc[key]
        assert out.dtype == STRUCTURED and out.shape == want.shape
        np.testing.assert_array_equal(out, want)
        assert out.tobytes() == want.tobytes()


def test_structured_dtype_descriptions_from_the_wire():
    """msgpack turns the description's tuples into lists and (with raw=True writers) its strings into
    bytes; both spellings decode to the same dtype."""
    arr = _structured()
    for descr in ([["x", "<f8"], ["n", "<i2"], ["pair", "<u4", [2]], ["tag", "|S3"]],
                  [[b"x", b"<f8"], [b"n", b"<i2"], [b"pair", b"<u4", [2]], [b"tag", b"|S3"]]):
        wire = msgpack.packb(["event", {"a": {b"nd": True, b"type": descr, b"kind": b"V", b"shape": [3],
                                              b"data": arr.tobytes()}}], use_bin_type=True)
        np.testing.assert_array_equal(unpack(wire)[1]["a"], arr)
    scalar = msgpack.packb(["event", {"s": {b"nd": False, b"type": b"<i2", b"data": np.int16(-9).tobytes()}}])
    out = unpack(scalar)[1]["s"]
    assert out == -9 and out.dtype == np.int16


def test_bytes_on_the_wire_equal_msgpack_numpy():
    """Not just readable by msgpack-numpy: the very same bytes, map keys and all."""
    m = pytest.importorskip("msgpack_numpy")
    doc = {"img": np.arange(12, dtype="<u2").reshape(3, 4), "table": _structured(), "t": np.float32(0.5),
           "n": np.int16(-3), "flag": np.bool_(True), "z": np.zeros((0, 2), dtype=np.complex64)}
    ours = pack("event", doc)
    theirs = msgpack.packb(["event", doc], default=m.encode, use_bin_type=True)
    assert ours == theirs


def test_sets_paths_and_integer_keys():
    from pathlib import Path, PurePosixPath

    _, doc = unpack(pack("start", {"motors": {"rot", "x", "y"}, "frozen": frozenset({3, 1, 2}),
                                   "path": Path("/data/scan 1/tooth.h5"), "pure": PurePosixPath("a/b"),
                                   "by_index": {0: "dark", 1: "flat", 2: "projection"}}))
    assert doc["motors"] == ["rot", "x", "y"] and doc["frozen"] == [1, 2, 3]
    assert doc["path"] == "/data/scan 1/tooth.h5" and doc["pure"] == "a/b"
    assert doc["by_index"] == {0: "dark", 1: "flat", 2: "projection"}


def test_what_msgpack_cannot_encode_is_a_codec_error_naming_the_document():
    with pytest.raises(CodecError, match=r"^cannot encode the event document: .*surrogates not allowed"):
        pack("event", {"note": "\ud800"})  # a lone surrogate has no UTF-8 encoding
    with pytest.raises(CodecError, match=r"^cannot encode 'int' in a document$"):
        pack("event", {"seq_num": 2**70})
