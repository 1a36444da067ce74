"""Fixtures for tests against a real Kafka broker (register them in tests/conftest.py with
``pytest_plugins = ["tests.system.conftest_kafka"]``).

``kafka_broker``: one single-node KRaft broker for the whole session, from the Maven
Central jars (fetched once into ~/.cache/tomobluesky/kafka, ~5 s the first time; needs
``java`` and, for that first fetch, ``mvn`` on PATH). Tests may stop and restart it; it
comes back on the same port and storage.
``kafka_config``: a :class:`KafkaConfig` on that broker with a topic of its own (a fresh
beamline name per test) and a journal directory in the test's tmp_path.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    from tomobluesky.services import KafkaBroker

    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture
def kafka_config(kafka_broker, tmp_path):
    from tomobluesky.transport import KafkaConfig

    if not kafka_broker.is_running():  # a previous test stopped it and failed before restarting
        kafka_broker.start()
    return KafkaConfig(bootstrap=kafka_broker.bootstrap, beamline=f"t{uuid.uuid4().hex[:10]}",
                       journal_dir=tmp_path / "journal")


@pytest.fixture
def kafka_collect(kafka_config):
    """``collect(config=None, group=None, **policy) -> (documents, stats)``: read a topic to its
    end with :func:`run_worker` (``WorkerPolicy(once=True, **policy)``) and return ``[(name, doc), ...]``."""
    from tomobluesky.transport import WorkerPolicy, run_worker

    def collect(config=None, group=None, **policy):
        got = []
        stats = run_worker(config or kafka_config, lambda name, doc: got.append((name, doc)),
                           group_id=group or f"collect-{uuid.uuid4().hex[:8]}", policy=WorkerPolicy(once=True, **policy))
        return got, stats

    return collect
