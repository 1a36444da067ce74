"""The msgpack codec: numpy-aware, explicit, compatible with msgpack-numpy's layout."""

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


def test_numpy_scalars_keep_their_type():
    _, doc = unpack(pack("event", {"x": np.float32(1.5), "n": np.int16(-3), "b": np.bool_(True)}))
    assert doc["x"] == np.float32(1.5) and doc["x"].dtype == np.float32
    assert doc["n"].dtype == np.int16 and doc["b"] is np.bool_(True) or bool(doc["b"])


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
    with pytest.raises(CodecError, match="object arrays"):
        pack("event", {"a": np.array([object()])})
    with pytest.raises(CodecError, match="cannot encode"):
        pack("event", {"a": object()})


def test_garbage_is_a_codec_error():
    with pytest.raises(CodecError, match="undecodable"):
        unpack(b"\xc1\x00garbage")
    with pytest.raises(CodecError):
        unpack(b"\x92\xa5event")  # truncated


def test_pickled_object_arrays_are_refused():
    evil = msgpack.packb({b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"cos\nsystem\n"},
                         use_bin_type=True)
    with pytest.raises(CodecError):
        unpack(evil)


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
