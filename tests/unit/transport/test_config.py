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


# nslsii's documented examples (its tests' configuration files), as a beamline has them
NSLSII_ACKS_0 = """\
---
  abort_run_on_kafka_exception: true
  bootstrap_servers:
    - localhost:9092
    - kafka1:9092
    - kafka2:9092
  runengine_producer_config:
    acks: 0
    message.timeout.ms: 3000
    compression.codec: snappy
"""

NSLSII_SASL = """\
---
  abort_run_on_kafka_exception: false
  bootstrap_servers:
    - localhost:9092
    - kafka2:9092
    - kafka3:9092
  producer_consumer_security_config:
    security.protocol: SASL_SSL
    sasl.mechanisms: PLAIN
    ssl.ca.location: /etc/ssl/certs/ca-bundle.crt
  consumer_config:
    auto.offset.reset: latest
  runengine_producer_config:
    compression.codec: snappy
    security.protocol: SASL_SSL
    sasl.mechanisms: PLAIN
    ssl.ca.location: /etc/ssl/certs/ca-bundle.crt
  runengine_topics:
    - "{endstation}.bluesky.runengine.documents"
    - "{endstation}.bluesky.runengine.{document_name}.documents"
"""


def write(tmp_path, text, name="kafka.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_nslsii_path_variable_and_its_precedence(tmp_path):
    nslsii = write(tmp_path, NSLSII_ACKS_0, "nslsii.yml")
    ours = write(tmp_path, "bootstrap_servers: [ours:1]\n", "ours.yml")
    assert load_config(env={"BLUESKY_KAFKA_CONFIG_PATH": str(nslsii)}).bootstrap == \
        "localhost:9092,kafka1:9092,kafka2:9092"
    both = {"BLUESKY_KAFKA_CONFIG_PATH": str(nslsii), "TOMOBLUESKY_KAFKA_CONFIG": str(ours)}
    assert load_config(env=both).bootstrap == "ours:1"
    assert load_config(nslsii, env={"TOMOBLUESKY_KAFKA_CONFIG": str(ours)}).source == nslsii
    with pytest.raises(FileNotFoundError, match="gone.yml"):  # named, so it must exist (as nslsii)
        load_config(env={"BLUESKY_KAFKA_CONFIG_PATH": str(tmp_path / "gone.yml")})


def test_topic_is_lower_cased_and_the_files_beamline_wins_over_a_default(tmp_path):
    nslsii = write(tmp_path, NSLSII_ACKS_0)
    assert load_config(nslsii, env={}, default_beamline="FXI").document_topic == "fxi.bluesky.runengine.documents"
    assert load_config(env={"TOMOBLUESKY_BEAMLINE": "ISS"}).document_topic == "iss.bluesky.runengine.documents"
    named = write(tmp_path, NSLSII_ACKS_0 + "  beamline: TES\n", "named.yml")
    assert load_config(named, env={}, default_beamline="tomo").document_topic == "tes.bluesky.runengine.documents"
    # the environment still wins over the file
    assert load_config(named, env={"TOMOBLUESKY_BEAMLINE": "hxn"}, default_beamline="tomo").beamline == "hxn"


def test_abort_run_on_kafka_exception_is_read(tmp_path):
    assert load_config(write(tmp_path, NSLSII_ACKS_0), env={}).abort_run_on_kafka_exception is True
    off = write(tmp_path, NSLSII_ACKS_0.replace("exception: true", "exception: false"), "off.yml")
    assert load_config(off, env={}).abort_run_on_kafka_exception is False
    bad = write(tmp_path, NSLSII_ACKS_0.replace("exception: true", "exception: maybe"), "bad.yml")
    with pytest.raises(ValueError, match="abort_run_on_kafka_exception must be true or false"):
        load_config(bad, env={})


def test_sasl_file_needs_credentials_and_takes_them_from_the_environment(tmp_path):
    path = write(tmp_path, NSLSII_SASL)
    with pytest.raises(ValueError, match=r"kafka.yml asks for SASL PLAIN but no credentials.*SASL_USERNAME"):
        load_config(path, env={})
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = load_config(path, env={"TOMOBLUESKY_KAFKA_SASL_USERNAME": "tomo-bot",
                                    "TOMOBLUESKY_KAFKA_SASL_PASSWORD_FILE": str(secret)}, default_beamline="CSX")
    assert config.security_config == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                                      "ssl.ca.location": "/etc/ssl/certs/ca-bundle.crt",
                                      "sasl.username": "tomo-bot", "sasl.password": "s3cret"}
    assert config.document_topic == "csx.bluesky.runengine.documents"  # the first of runengine_topics
    assert config.client_settings()["sasl.username"] == "tomo-bot"
    assert config.consumer_config == {"auto.offset.reset": "latest"}
    assert config.abort_run_on_kafka_exception is False


def test_state_and_cache_directories_follow_xdg(tmp_path, monkeypatch):
    from tomobluesky.services.kafka import default_cache_root, default_state_dir
    from tomobluesky.transport._config import default_journal_dir

    for variable in ("TOMOBLUESKY_KAFKA_CACHE", "TOMOBLUESKY_KAFKA_STATE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_journal_dir() == tmp_path / "state" / "tomobluesky" / "kafka-journal"
    assert default_state_dir() == tmp_path / "state" / "tomobluesky" / "kafka"
    assert default_cache_root() == tmp_path / "cache" / "tomobluesky" / "kafka"


def test_overrides_go_over_the_file_and_under_the_environment(tmp_path):
    """What the settings' kafka section hands load_config: the file's keys, replaced key by key, the
    librdkafka mappings merged setting by setting."""
    path = write(tmp_path, NSLSII_SASL + "  topic: site.docs\n")
    env = {"TOMOBLUESKY_KAFKA_SASL_USERNAME": "bot", "TOMOBLUESKY_KAFKA_SASL_PASSWORD": "pw"}
    config = load_config(path, env=env, overrides={
        "bootstrap_servers": ["ours:9092"], "runengine_topics": ["{endstation}.ours"], "beamline": "HXN",
        "consumer_config": {"session.timeout.ms": 10000}, "abort_run_on_kafka_exception": True})
    assert config.bootstrap == "ours:9092" and config.abort_run_on_kafka_exception is True
    assert config.document_topic == "hxn.ours"  # the overriding topic list replaces the file's topic
    assert config.consumer_config == {"auto.offset.reset": "latest", "session.timeout.ms": 10000}
    assert config.security_config["security.protocol"] == "SASL_SSL" and config.security_config["sasl.password"] == "pw"
    env["TOMOBLUESKY_KAFKA_BOOTSTRAP"] = "env:1"
    assert load_config(path, env=env, overrides={"bootstrap_servers": "ours:9092"}).bootstrap == "env:1"
