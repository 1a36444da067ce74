"""What the worker dead-letters, and why."""

import msgpack
import pytest

from tomobluesky.transport import Malformed, decode_document, pack


@pytest.fixture
def run_documents(RE, documents):
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    RE(count([det], 3))
    return documents


def test_real_documents_pass(run_documents):
    for name, doc in run_documents:
        assert decode_document(pack(name, doc))[0] == name


@pytest.mark.parametrize("value, reason", [
    (b"\xc1", "undecodable"),
    (msgpack.packb(42), "not-a-pair"),
    (msgpack.packb(["start", {}, 3]), "not-a-pair"),
    (msgpack.packb(["nonsense", {}]), "unknown-name"),
    (msgpack.packb([7, {}]), "unknown-name"),
    (msgpack.packb(["event", [1, 2]]), "not-a-document"),
    (msgpack.packb(["start", {"uid": "x"}]), "schema-invalid"),  # no time
    (None, "empty"),
])
def test_reasons(value, reason):
    with pytest.raises(Malformed) as info:
        decode_document(value)
    assert info.value.reason == reason


def test_schema_invalid_names_the_field(run_documents):
    name, event = next((n, d) for n, d in run_documents if n == "event")
    bad = dict(event, seq_num="three")
    with pytest.raises(Malformed, match="seq_num"):
        decode_document(pack(name, bad))
    assert decode_document(pack(name, bad), validate=False)[1]["seq_num"] == "three"
