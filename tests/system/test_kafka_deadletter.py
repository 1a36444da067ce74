"""Garbage and malformed documents go to <topic>.deadletter with a reason; the worker
keeps going and every good document arrives."""

from __future__ import annotations

import collections
import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomobluesky.transport import DOCUMENT_NAMES, KafkaPublisher, WorkerPolicy, pack, run_worker

pytestmark = pytest.mark.system

REASONS = {"empty", "undecodable", "not-a-pair", "unknown-name", "not-a-document", "schema-invalid"}

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=12)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def malformed(real_documents):
    """Messages that are wrong by construction (never a valid [name, doc])."""
    from event_model import DocumentNames, schemas

    def break_document(pick, how, key_index):
        name, doc = pick
        schema = schemas[DocumentNames[name]]
        required = [k for k in schema["required"] if schema["properties"].get(k, {}).get("type")]
        key = required[key_index % len(required)]
        doc = dict(doc)
        if how == "drop":
            del doc[key]
        else:
            doc[key] = 7 if schema["properties"][key]["type"] == "object" else {"not": ["right"]}
        return pack(name, doc)

    not_a_pair = anything.filter(lambda o: not (isinstance(o, list) and len(o) == 2)).map(msgpack.packb)
    unknown_name = st.tuples(st.text(max_size=20).filter(lambda s: s not in DOCUMENT_NAMES),
                             st.dictionaries(st.text(max_size=8), scalars, max_size=3)).map(
        lambda t: msgpack.packb(list(t)))
    not_a_document = st.tuples(st.sampled_from(sorted(DOCUMENT_NAMES)),
                               anything.filter(lambda o: not isinstance(o, dict))).map(
        lambda t: msgpack.packb(list(t)))
    schema_invalid = st.builds(break_document, st.sampled_from(real_documents),
                               st.sampled_from(["drop", "mistype"]), st.integers(0, 20))
    truncated = st.builds(lambda p, cut: pack(*p)[: max(1, cut % len(pack(*p)))],
                          st.sampled_from(real_documents), st.integers(1, 10_000))
    return st.one_of(not_a_pair, unknown_name, not_a_document, schema_invalid, truncated)


def test_garbage_and_malformed_documents_are_dead_lettered(RE, documents, kafka_config):
    from bluesky.plans import count
    from confluent_kafka import Consumer, Producer
    from ophyd.sim import det  # the simulated point detector

    RE(count([det], 5))
    real = list(documents)
    documents.clear()

    topic = kafka_config.document_topic
    raw = Producer({"bootstrap.servers": kafka_config.bootstrap, "linger.ms": 5})
    bad: list[bytes] = []

    def send_bad(value: bytes):
        raw.produce(topic, value=value, key=b"garbage")
        bad.append(value)
        raw.poll(0)

    with KafkaPublisher(kafka_config) as pub:
        RE.subscribe(pub)
        RE(count([det], 20))
        assert pub.flush(30) == 0
        rng = random.Random(4)
        for _ in range(1000):
            send_bad(rng.randbytes(rng.randint(0, 300)))

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(malformed(real))
        def send_malformed(value):
            send_bad(value)

        send_malformed()
        assert raw.flush(30) == 0
        RE(count([det], 20))  # good documents after the garbage
        assert pub.flush(30) == 0

    got = []
    stats = run_worker(kafka_config, lambda name, doc: got.append((name, doc)), group_id="dlq", policy=WorkerPolicy(once=True))
    assert [pack(n, d) for n, d in got] == [pack(n, d) for n, d in documents]  # no good document lost
    assert stats.deadlettered == len(bad) > 1000
    assert set(stats.reasons) <= REASONS and {"undecodable", "schema-invalid", "not-a-pair"} <= set(stats.reasons)

    dlq = Consumer({"bootstrap.servers": kafka_config.bootstrap, "group.id": "inspect",
                    "auto.offset.reset": "earliest", "enable.partition.eof": True})
    dlq.subscribe([kafka_config.deadletter_topic])
    dead, eof = [], False
    while not eof:
        for msg in dlq.consume(500, timeout=5):
            if msg.error():
                eof = True
                continue
            headers = dict(msg.headers())
            assert headers["reason"].decode() in REASONS and headers["detail"]
            assert headers["source-topic"].decode() == topic
            dead.append(msg.value() or b"")
    dlq.close()
    assert collections.Counter(dead) == collections.Counter(bad)
