"""Message bytes → a Bluesky document, or :class:`Malformed` with a short reason.

A message is the msgpack pair ``[name, doc]``; it is malformed when it does not
decode, is not a pair, names no Bluesky document, or (``validate``) fails the
event_model schema of its kind. The reason tag goes into the dead-letter header.
"""

from __future__ import annotations

from ._codec import CodecError, unpack

DOCUMENT_NAMES = frozenset({"start", "descriptor", "event", "event_page", "stop", "resource", "datum",
                            "datum_page", "stream_resource", "stream_datum"})


class Malformed(ValueError):
    """A message that is not a valid Bluesky document; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_document(value: bytes | None, *, validate: bool = True) -> tuple[str, dict]:
    """Message bytes → ``(name, doc)``, or :class:`Malformed` saying why not."""
    if value is None:
        raise Malformed("empty", "the message has no value")
    try:
        obj = unpack(value)
    except CodecError as e:
        raise Malformed("undecodable", str(e)) from None
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise Malformed("not-a-pair", f"expected [name, document], got {type(obj).__name__}"
                        + (f" of length {len(obj)}" if isinstance(obj, (list, tuple)) else ""))
    name, doc = obj
    if not isinstance(name, str) or name not in DOCUMENT_NAMES:
        raise Malformed("unknown-name", f"unknown document name {name!r:.80}")
    if not isinstance(doc, dict):
        raise Malformed("not-a-document", f"the {name} document is a {type(doc).__name__}, not a mapping")
    if validate:
        from event_model import DocumentNames, schema_validators
        from jsonschema.exceptions import ValidationError

        try:
            schema_validators[DocumentNames[name]].validate(doc)
        except ValidationError as e:
            where = "/".join(map(str, e.absolute_path)) or "(top level)"
            raise Malformed("schema-invalid", f"{name} at {where}: {e.message:.300}") from None
        except Exception as e:  # validators can trip on odd types (bytes keys, NaN in odd places)
            raise Malformed("schema-invalid", f"{name}: {type(e).__name__}: {e}"[:300]) from None
    return name, doc
