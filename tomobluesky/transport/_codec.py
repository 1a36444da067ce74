"""msgpack codec for Bluesky documents, numpy-aware, with no global patching.

A message value is the msgpack array ``[name, doc]`` (as bluesky-kafka writes it).
numpy arrays and scalars are written in msgpack-numpy's map layout
(``{b"nd": True, b"type": dtype.str, b"kind": b"", b"shape": [...], b"data": raw}``),
so consumers using msgpack-numpy read our messages and we read theirs; object
arrays are refused (msgpack-numpy would pickle them, and unpickling network
input is unsafe). Everything is explicit: :func:`pack` and :func:`unpack` pass
their own hooks to msgpack; nothing is monkeypatched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # the C classes, by reference: immune to msgpack_numpy.patch() (which bluesky-kafka applies on import)
    from msgpack._cmsgpack import Packer as _Packer
    from msgpack._cmsgpack import unpackb as _unpackb
except ImportError:  # pragma: no cover - pure-Python msgpack
    from msgpack.fallback import Packer as _Packer
    from msgpack.fallback import unpackb as _unpackb


class CodecError(ValueError):
    """A document could not be encoded, or a message could not be decoded."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            raise CodecError("object arrays cannot be sent (msgpack-numpy would pickle them)")
        if obj.dtype.kind == "V":
            return {b"nd": True, b"type": obj.dtype.descr, b"kind": b"V", b"shape": list(obj.shape),
                    b"data": np.ascontiguousarray(obj).tobytes()}
        return {b"nd": True, b"type": obj.dtype.str, b"kind": b"", b"shape": list(obj.shape),
                b"data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, (np.bool_, np.number)):
        return {b"nd": False, b"type": obj.dtype.str, b"data": obj.tobytes()}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise CodecError(f"cannot encode {type(obj).__name__!r} in a document")


def _dtype(descr: Any) -> np.dtype:
    if isinstance(descr, (bytes, str)):
        return np.dtype(descr.decode() if isinstance(descr, bytes) else descr)
    fields = []
    for field in descr:
        fields.append(tuple(t.decode() if isinstance(t, bytes) else (tuple(t) if isinstance(t, list) else t)
                            for t in field))
    return np.dtype(fields)


def _object_hook(obj: dict) -> Any:
    nd = obj.get(b"nd", None)
    if nd is None:
        return obj
    try:
        if nd is True:
            if obj.get(b"kind") == b"O":
                raise CodecError("refusing a pickled object array")
            dtype = _dtype(obj[b"type"])
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"]).copy()
        return np.frombuffer(obj[b"data"], dtype=_dtype(obj[b"type"]))[0]
    except (KeyError, TypeError, ValueError) as e:
        raise CodecError(f"bad numpy payload: {e}") from e


def pack(name: str, doc: dict) -> bytes:
    """``(name, doc)`` → bytes."""
    try:
        return _Packer(default=_default, use_bin_type=True).pack([name, doc])
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"cannot encode the {name} document: {e}") from e


def unpack(data: bytes) -> Any:
    """bytes → whatever was packed (normally ``[name, doc]``); :class:`CodecError` if undecodable."""
    try:
        return _unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as e:  # msgpack raises several unrelated types (ExtraData, ValueError, ...)
        raise CodecError(f"undecodable msgpack: {type(e).__name__}: {e}") from e
