"""abort_run_on_kafka_exception with a real broker that refuses documents (a topic whose
max.message.bytes is smaller than the publisher's limit): the refusal comes back from the
sender thread, after the publish call returned."""

from __future__ import annotations

import numpy as np
import pytest

from tomobluesky.transport import KafkaPublisher, PublishError, pack, unpack

pytestmark = pytest.mark.system


def medium_camera():
    """A 7.2 kB image at every event: under the publisher's limit, over the topic's."""
    from ophyd import Component, Device, Signal

    class Camera(Device):
        image = Component(Signal, value=np.ones((30, 30)), kind="hinted")

    return Camera(name="cam")


def strict_topic(config):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(config.client_settings())
    futures = admin.create_topics([NewTopic(config.document_topic, num_partitions=1, replication_factor=1,
                                            config={"max.message.bytes": "4000"})])
    for future in futures.values():
        future.result(30)


@pytest.mark.parametrize("abort", [True, False])
def test_a_broker_refusal_aborts_the_run_only_when_the_file_says_so(RE, kafka_config, abort):
    from bluesky.plans import count
    from ophyd.sim import det

    config = kafka_config.replace(abort_run_on_kafka_exception=abort)
    strict_topic(config)
    emitted = []
    RE.subscribe(lambda name, doc: emitted.append((name, doc)))
    pub = KafkaPublisher(config)
    RE.subscribe(pub)
    plan = count([det, medium_camera()], 20, delay=0.3)  # 6 s: the first refusal comes back mid-run
    if abort:
        with pytest.raises(PublishError, match="the broker refused message"):
            RE(plan)
    else:
        RE(plan)
    pub.close(30)
    events = [doc for name, doc in emitted if name == "event"]
    stop = [doc for name, doc in emitted if name == "stop"]
    assert stop[0]["exit_status"] == ("fail" if abort else "success")
    assert len(events) < 20 if abort else len(events) == 20
    # every refused document is kept, byte for byte, and named in one error. Every event is refused; a small
    # document batched with a big one by the producer may be refused with it (the broker checks whole batches)
    kept = sorted((config.journal_dir / "rejected").glob("*.msgpack"))
    by_uid = {unpack(p.read_bytes())[1]["uid"]: p.read_bytes() for p in kept}
    assert {e["uid"] for e in events} <= set(by_uid)
    assert all(by_uid[doc["uid"]] == pack(name, doc) for name, doc in emitted if doc["uid"] in by_uid)
    assert len(pub.errors) == len(kept) and all("the broker refused message" in str(e) for e in pub.errors)
