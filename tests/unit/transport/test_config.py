"""YAML (the /etc/bluesky/kafka.yml convention) with environment overrides."""


import pytest

from tomobluesky.transport import KafkaConfig, load_config


def test_defaults_when_no_file(tmp_path):
    config = load_config(env={})  # /etc/bluesky/kafka.yml does not exist on test machines
    assert config.document_topic == "tomo.bluesky.runengine.documents"
    assert config.deadletter_topic == "tomo.bluesky.runengine.documents.deadletter"


def test_nsls2_file_then_environment(tmp_path):
    path = tmp_path / "kafka.yml"
    path.write_text("""
abort_run_on_kafka_exception: false
bootstrap_servers: [kafka1:9092, kafka2:9092]
runengine_topics: ["{endstation}.bluesky.runengine.documents"]
beamline: tes
runengine_producer_config: {compression.type: lz4}
max_message_bytes: 2000000
""")
    config = load_config(path, env={})
    assert config.bootstrap == "kafka1:9092,kafka2:9092"
    assert config.document_topic == "tes.bluesky.runengine.documents"
    assert config.producer_config == {"compression.type": "lz4"}
    assert config.max_message_bytes == 2_000_000

    env = {"TOMOBLUESKY_KAFKA_CONFIG": str(path), "TOMOBLUESKY_KAFKA_BOOTSTRAP": "localhost:1",
           "TOMOBLUESKY_KAFKA_JOURNAL": str(tmp_path / "j"), "TOMOBLUESKY_KAFKA_TOPIC": "x.docs"}
    config = load_config(env=env)
    assert config.bootstrap == "localhost:1"
    assert config.journal_dir == tmp_path / "j"
    assert config.document_topic == "x.docs"


def test_beamline_from_environment():
    assert load_config(env={"TOMOBLUESKY_BEAMLINE": "2bm"}).document_topic == "2bm.bluesky.runengine.documents"


def test_mistakes_are_loud(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yml", env={})
    bad = tmp_path / "bad.yml"
    bad.write_text("bootstrap_server: typo:9092\n")
    with pytest.raises(ValueError, match="bootstrap_server"):
        load_config(bad, env={})


def test_replace_keeps_the_rest():
    c = KafkaConfig(beamline="a").replace(bootstrap="h:1")
    assert (c.beamline, c.bootstrap) == ("a", "h:1")
