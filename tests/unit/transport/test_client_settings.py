"""Site librdkafka settings meet our delivery guarantees: respected, and a lost guarantee is said once."""

import logging
import socket

import pytest

from tomobluesky.transport import DocumentConsumer, KafkaPublisher, load_config
from tomobluesky.transport._client_settings import consumer_settings, producer_settings

from .test_config import NSLSII_ACKS_0, NSLSII_SASL, write

OURS = {"acks": "all", "enable.idempotence": True, "message.timeout.ms": 0, "linger.ms": 2}


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tomobluesky.transport.config"
            and r.levelno == logging.WARNING]


def test_acks_0_drops_idempotence_in_one_line_naming_the_loss(caplog):
    site = {"acks": 0, "message.timeout.ms": 3000, "compression.codec": "snappy"}
    with caplog.at_level(logging.WARNING):
        merged = producer_settings(OURS, site, {}, source="/etc/bluesky/kafka.yml")
    assert merged == {"acks": 0, "enable.idempotence": False, "message.timeout.ms": 3000, "linger.ms": 2,
                      "compression.codec": "snappy"}
    [line] = warnings_of(caplog)
    assert "/etc/bluesky/kafka.yml" in line and "acks=0" in line and "idempotence is off" in line
    assert "message.timeout.ms=3000" in line


def test_settings_that_keep_the_guarantees_say_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        merged = producer_settings(OURS, {"acks": "all", "compression.type": "lz4"}, {"security.protocol": "SSL"})
    assert merged["enable.idempotence"] is True and merged["security.protocol"] == "SSL"
    assert merged["compression.type"] == "lz4"
    assert warnings_of(caplog) == []


def test_site_turning_idempotence_off_is_respected_and_said(caplog):
    with caplog.at_level(logging.WARNING):
        merged = producer_settings(OURS, {"enable.idempotence": False}, {})
    assert merged["enable.idempotence"] is False
    [line] = warnings_of(caplog)
    assert "enable.idempotence=false" in line and "duplicate" in line


def test_consumer_keeps_commit_when_durable(caplog):
    ours = {"enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest"}
    with caplog.at_level(logging.WARNING):
        merged = consumer_settings(ours, {"enable.auto.commit": True, "auto.offset.reset": "latest"},
                                   {"security.protocol": "SASL_SSL"})
    assert merged == {"enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "latest",
                      "security.protocol": "SASL_SSL"}
    [line] = warnings_of(caplog)
    assert "enable.auto.commit=True" in line


@pytest.fixture
def dead_bootstrap():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_publisher_builds_from_nslsii_acks_0_file(tmp_path, dead_bootstrap, caplog):
    """The real librdkafka producer refuses acks=0 with idempotence: the publisher must not crash."""
    pytest.importorskip("confluent_kafka")
    config = load_config(write(tmp_path, NSLSII_ACKS_0), env={"TOMOBLUESKY_KAFKA_BOOTSTRAP": dead_bootstrap})
    with caplog.at_level(logging.WARNING):
        pub = KafkaPublisher(config, journal_dir=tmp_path / "journal")
    try:
        assert len(warnings_of(caplog)) == 1
        assert pub.on_too_large == "raise"  # abort_run_on_kafka_exception: true
        pub("start", {"uid": "u1", "time": 0.0})
        assert pub.pending() >= 1  # queued, not lost
    finally:
        assert pub.close(timeout=0.2) == 1  # kept in the journal for the next publisher


def test_clients_build_with_the_nslsii_sasl_file(tmp_path, dead_bootstrap):
    """Producer and consumer both get the security section (librdkafka checks SASL settings on creation)."""
    pytest.importorskip("confluent_kafka")
    secret = tmp_path / "pw"
    secret.write_text("x")
    env = {"TOMOBLUESKY_KAFKA_BOOTSTRAP": dead_bootstrap, "TOMOBLUESKY_KAFKA_SASL_USERNAME": "u",
           "TOMOBLUESKY_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    config = load_config(write(tmp_path, NSLSII_SASL.replace("ca-bundle.crt", "ca-certificates.crt")), env=env)
    pub = KafkaPublisher(config, journal_dir=tmp_path / "journal")
    assert pub.on_too_large == "report"  # abort_run_on_kafka_exception: false
    pub.close(timeout=0.1)
    consumer = DocumentConsumer(config, "sasl-check")
    consumer.close()
    # without the security section librdkafka would not need credentials; with it, it refuses an empty password
    from confluent_kafka import KafkaException

    broken = config.replace(security_config={**config.security_config, "sasl.password": ""})
    with pytest.raises(KafkaException, match="sasl.password"):
        DocumentConsumer(broken, "sasl-check")
    with pytest.raises(KafkaException, match="sasl.password"):
        KafkaPublisher(broken, journal_dir=tmp_path / "journal")
