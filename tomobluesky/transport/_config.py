"""Kafka settings: the NSLS-II ``/etc/bluesky/kafka.yml`` convention plus our keys,
then environment overrides.

YAML (every key optional)::

    bootstrap_servers: [kafka1:9092, kafka2:9092]   # or a "h:p,h:p" string
    beamline: tomo                                  # topic <beamline>.bluesky.runengine.documents
    topic: tomo.bluesky.runengine.documents         # explicit topic instead
    runengine_producer_config: {compression.type: lz4}   # extra librdkafka producer settings
    consumer_config: {session.timeout.ms: 10000}         # extra librdkafka consumer settings
    journal_dir: /var/spool/bluesky/kafka           # on-disk journal for outages
    queue_size: 100000                              # documents between the RunEngine and the sender
    max_message_bytes: 1000000                      # larger documents are refused by name

Environment (wins over the file): TOMOBLUESKY_KAFKA_CONFIG (the file's path),
TOMOBLUESKY_KAFKA_BOOTSTRAP, TOMOBLUESKY_BEAMLINE, TOMOBLUESKY_KAFKA_TOPIC,
TOMOBLUESKY_KAFKA_JOURNAL, TOMOBLUESKY_KAFKA_MAX_MESSAGE_BYTES.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_CONFIG_PATH = Path("/etc/bluesky/kafka.yml")
ENV_PREFIX = "TOMOBLUESKY_"


def document_topic(beamline: str) -> str:
    """The NSLS-II convention: ``<beamline>.bluesky.runengine.documents``."""
    return f"{beamline}.bluesky.runengine.documents"


def deadletter_topic(topic: str) -> str:
    return f"{topic}.deadletter"


def default_journal_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "tomobluesky" / "kafka-journal"


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    beamline: str = "tomo"
    topic: str | None = None
    producer_config: Mapping[str, object] = field(default_factory=dict)
    consumer_config: Mapping[str, object] = field(default_factory=dict)
    journal_dir: Path | None = None
    queue_size: int = 100_000
    max_message_bytes: int = 1_000_000

    @property
    def document_topic(self) -> str:
        return self.topic or document_topic(self.beamline)

    @property
    def deadletter_topic(self) -> str:
        return deadletter_topic(self.document_topic)

    def replace(self, **changes) -> "KafkaConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping) -> "KafkaConfig":
        kw: dict = {}
        servers = data.get("bootstrap_servers", data.get("bootstrap"))
        if servers:
            kw["bootstrap"] = servers if isinstance(servers, str) else ",".join(map(str, servers))
        for key in ("beamline", "topic"):
            if data.get(key):
                kw[key] = str(data[key])
        topics = data.get("runengine_topics")
        if topics and "topic" not in kw:
            first = topics[0] if not isinstance(topics, str) else topics
            kw["topic"] = first.replace("{endstation}", kw.get("beamline", cls.beamline))
        if data.get("runengine_producer_config"):
            kw["producer_config"] = dict(data["runengine_producer_config"])
        if data.get("consumer_config"):
            kw["consumer_config"] = dict(data["consumer_config"])
        if data.get("journal_dir"):
            kw["journal_dir"] = Path(data["journal_dir"]).expanduser()
        for key in ("queue_size", "max_message_bytes"):
            if data.get(key) is not None:
                kw[key] = int(data[key])
        unknown = set(data) - {"bootstrap_servers", "bootstrap", "beamline", "topic", "runengine_topics",
                               "runengine_producer_config", "consumer_config", "journal_dir", "queue_size",
                               "max_message_bytes", "abort_run_on_kafka_exception"}
        if unknown:
            raise ValueError(f"unknown Kafka configuration keys: {sorted(unknown)}")
        return cls(**kw)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> KafkaConfig:
    """Read the YAML file (``path``, else $TOMOBLUESKY_KAFKA_CONFIG, else /etc/bluesky/kafka.yml
    when it exists), then apply the environment overrides. ``env`` defaults to os.environ."""
    env = os.environ if env is None else env
    explicit = path or env.get(ENV_PREFIX + "KAFKA_CONFIG")
    file = Path(explicit).expanduser() if explicit else DEFAULT_CONFIG_PATH
    data: dict = {}
    if explicit and not file.exists():
        raise FileNotFoundError(f"Kafka configuration file not found: {file}")
    if file.exists():
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a mapping at the top level")
    config = KafkaConfig.from_mapping(data)
    overrides: dict = {}
    if env.get(ENV_PREFIX + "KAFKA_BOOTSTRAP"):
        overrides["bootstrap"] = env[ENV_PREFIX + "KAFKA_BOOTSTRAP"]
    if env.get(ENV_PREFIX + "BEAMLINE"):
        overrides["beamline"] = env[ENV_PREFIX + "BEAMLINE"]
    if env.get(ENV_PREFIX + "KAFKA_TOPIC"):
        overrides["topic"] = env[ENV_PREFIX + "KAFKA_TOPIC"]
    if env.get(ENV_PREFIX + "KAFKA_JOURNAL"):
        overrides["journal_dir"] = Path(env[ENV_PREFIX + "KAFKA_JOURNAL"]).expanduser()
    if env.get(ENV_PREFIX + "KAFKA_MAX_MESSAGE_BYTES"):
        overrides["max_message_bytes"] = int(env[ENV_PREFIX + "KAFKA_MAX_MESSAGE_BYTES"])
    return config.replace(**overrides) if overrides else config
