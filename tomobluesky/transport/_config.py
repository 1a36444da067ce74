"""Kafka settings: the NSLS-II ``/etc/bluesky/kafka.yml`` file as nslsii reads it,
plus our own keys, then environment overrides.

The file (every key optional here; nslsii requires the first three)::

    abort_run_on_kafka_exception: true              # a publish error aborts the run (false: logged, scan goes on)
    bootstrap_servers: [kafka1:9092, kafka2:9092]   # or a "h:p,h:p" string
    runengine_producer_config: {acks: all}          # site librdkafka producer settings
    producer_consumer_security_config:              # SASL/SSL: given to every client (producer, consumer, admin)
      security.protocol: SASL_SSL
      sasl.mechanisms: PLAIN
    consumer_config: {session.timeout.ms: 10000}    # site librdkafka consumer settings
    runengine_topics: ["{endstation}.bluesky.runengine.documents"]   # the first is ours
    beamline: tomo                                  # topic <beamline, lower-cased>.bluesky.runengine.documents
    topic: tomo.bluesky.runengine.documents         # an explicit topic instead ("{endstation}" allowed)
    journal_dir: /var/spool/bluesky/kafka           # on-disk journal for outages
    queue_size: 100000                              # documents between the RunEngine and the sender
    max_message_bytes: 1000000                      # larger documents are refused by name

Which file: the ``path`` argument, else $TOMOBLUESKY_KAFKA_CONFIG, else
$BLUESKY_KAFKA_CONFIG_PATH (nslsii's variable), else /etc/bluesky/kafka.yml when
it exists. A file named explicitly (argument or variable) must exist.

Environment (wins over the file): TOMOBLUESKY_KAFKA_BOOTSTRAP, TOMOBLUESKY_BEAMLINE,
TOMOBLUESKY_KAFKA_TOPIC, TOMOBLUESKY_KAFKA_JOURNAL, TOMOBLUESKY_KAFKA_MAX_MESSAGE_BYTES.
SASL credentials, which a site file leaves out: TOMOBLUESKY_KAFKA_SASL_USERNAME with
TOMOBLUESKY_KAFKA_SASL_PASSWORD_FILE (a file holding the password) or
TOMOBLUESKY_KAFKA_SASL_PASSWORD; they join the security section.

How site producer and consumer settings meet our delivery guarantees is in
:mod:`._client_settings`.
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
NSLSII_PATH_VARIABLE = "BLUESKY_KAFKA_CONFIG_PATH"
_ENDSTATION = "{endstation}"
_KNOWN_KEYS = frozenset({
    "bootstrap_servers", "bootstrap", "beamline", "topic", "runengine_topics", "runengine_producer_config",
    "consumer_config", "producer_consumer_security_config", "abort_run_on_kafka_exception", "journal_dir",
    "queue_size", "max_message_bytes"})


def document_topic(beamline: str) -> str:
    """The NSLS-II convention: ``<beamline>.bluesky.runengine.documents``, lower-cased as nslsii does
    (a profile's ``FXI`` publishes to ``fxi.bluesky.runengine.documents``)."""
    return f"{beamline.lower()}.bluesky.runengine.documents"


def deadletter_topic(topic: str) -> str:
    return f"{topic}.deadletter"


def default_journal_dir() -> Path:
    """~/.local/state/tomobluesky/kafka-journal on Linux ($XDG_STATE_HOME respected)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("tomobluesky")) / "kafka-journal"


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    beamline: str = "tomo"
    topic: str | None = None  # may hold "{endstation}", filled with the lower-cased beamline
    producer_config: Mapping[str, object] = field(default_factory=dict)
    consumer_config: Mapping[str, object] = field(default_factory=dict)
    security_config: Mapping[str, object] = field(default_factory=dict)
    abort_run_on_kafka_exception: bool = True
    journal_dir: Path | None = None
    queue_size: int = 100_000
    max_message_bytes: int = 1_000_000
    source: Path | None = None  # the file these settings came from, named in messages

    @property
    def document_topic(self) -> str:
        if self.topic:
            return self.topic.replace(_ENDSTATION, self.beamline.lower())
        return document_topic(self.beamline)

    @property
    def deadletter_topic(self) -> str:
        return deadletter_topic(self.document_topic)

    def client_settings(self) -> dict:
        """What every client of this cluster needs: the servers and the site's security settings."""
        return {"bootstrap.servers": self.bootstrap, **dict(self.security_config)}

    def replace(self, **changes) -> "KafkaConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping, source: Path | None = None) -> "KafkaConfig":
        unknown = set(data) - _KNOWN_KEYS
        if unknown:
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}unknown Kafka configuration keys: {sorted(unknown)}")
        kw: dict = {"source": source}
        servers = data.get("bootstrap_servers", data.get("bootstrap"))
        if servers:
            kw["bootstrap"] = servers if isinstance(servers, str) else ",".join(map(str, servers))
        for key in ("beamline", "topic"):
            if data.get(key):
                kw[key] = str(data[key])
        topics = data.get("runengine_topics")
        if topics and "topic" not in kw:
            kw["topic"] = topics if isinstance(topics, str) else str(topics[0])
        for ours, theirs in (("producer_config", "runengine_producer_config"), ("consumer_config", "consumer_config"),
                             ("security_config", "producer_consumer_security_config")):
            kw[ours] = _section(data, theirs, source)
        if data.get("abort_run_on_kafka_exception") is not None:
            kw["abort_run_on_kafka_exception"] = _boolean(data["abort_run_on_kafka_exception"], source)
        if data.get("journal_dir"):
            kw["journal_dir"] = Path(data["journal_dir"]).expanduser()
        for key in ("queue_size", "max_message_bytes"):
            if data.get(key) is not None:
                kw[key] = int(data[key])
        return cls(**kw)


def _section(data: Mapping, key: str, source: Path | None) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{source or 'Kafka configuration'}: {key} must be a mapping of librdkafka settings, "
                         f"not {type(value).__name__}")
    return dict(value)


def _boolean(value, source: Path | None) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{source or 'Kafka configuration'}: abort_run_on_kafka_exception must be true or false, "
                     f"not {value!r}")


def config_path(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The file to read and whether it was named explicitly (then it must exist)."""
    env = os.environ if env is None else env
    explicit = path or env.get(ENV_PREFIX + "KAFKA_CONFIG") or env.get(NSLSII_PATH_VARIABLE)
    return (Path(explicit).expanduser(), True) if explicit else (DEFAULT_CONFIG_PATH, False)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None, *,
                default_beamline: str | None = None, overrides: Mapping | None = None) -> KafkaConfig:
    """Read the YAML file (see the module's docstring for which), then ``overrides`` (the keys of
    that file, e.g. the settings' ``kafka`` section), then the environment overrides. ``env``
    defaults to os.environ. ``default_beamline`` (a profile's beamline name, as nslsii's
    ``configure_kafka_publisher`` takes it) is used only when neither the file, the overrides nor
    $TOMOBLUESKY_BEAMLINE names one: a site file's beamline is never replaced by a default."""
    env = os.environ if env is None else env
    file, explicit = config_path(path, env)
    data: dict = {}
    if explicit and not file.is_file():
        raise FileNotFoundError(f"Kafka configuration file not found: {file}")
    if file.is_file():
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a mapping at the top level")
    data = _overlay(data, overrides or {})
    config = KafkaConfig.from_mapping(data, source=file if file.is_file() else None)
    overrides: dict = {}
    for variable, key in (("KAFKA_BOOTSTRAP", "bootstrap"), ("BEAMLINE", "beamline"), ("KAFKA_TOPIC", "topic")):
        if env.get(ENV_PREFIX + variable):
            overrides[key] = env[ENV_PREFIX + variable]
    if default_beamline and not data.get("beamline") and "beamline" not in overrides:
        overrides["beamline"] = default_beamline
    credentials = _sasl_credentials(env)
    if credentials:
        overrides["security_config"] = {**config.security_config, **credentials}
    if env.get(ENV_PREFIX + "KAFKA_JOURNAL"):
        overrides["journal_dir"] = Path(env[ENV_PREFIX + "KAFKA_JOURNAL"]).expanduser()
    if env.get(ENV_PREFIX + "KAFKA_MAX_MESSAGE_BYTES"):
        overrides["max_message_bytes"] = int(env[ENV_PREFIX + "KAFKA_MAX_MESSAGE_BYTES"])
    config = config.replace(**overrides) if overrides else config
    _check_sasl(config)
    return config


def _sasl_credentials(env: Mapping[str, str]) -> dict:
    out = {}
    if env.get(ENV_PREFIX + "KAFKA_SASL_USERNAME"):
        out["sasl.username"] = env[ENV_PREFIX + "KAFKA_SASL_USERNAME"]
    password_file = env.get(ENV_PREFIX + "KAFKA_SASL_PASSWORD_FILE")
    if password_file:
        out["sasl.password"] = Path(password_file).expanduser().read_text().strip()
    elif env.get(ENV_PREFIX + "KAFKA_SASL_PASSWORD"):
        out["sasl.password"] = env[ENV_PREFIX + "KAFKA_SASL_PASSWORD"]
    return out


def _check_sasl(config: KafkaConfig) -> None:
    """librdkafka's own message ("sasl.username and sasl.password must be set") names neither
    the file nor where the credentials go."""
    security = config.security_config
    mechanism = str(security.get("sasl.mechanisms", security.get("sasl.mechanism", ""))).upper()
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            security.get("sasl.username") and security.get("sasl.password")):
        raise ValueError(f"{config.source or 'the Kafka configuration'} asks for SASL {mechanism} but no "
                         f"credentials are set: set {ENV_PREFIX}KAFKA_SASL_USERNAME and "
                         f"{ENV_PREFIX}KAFKA_SASL_PASSWORD_FILE (or sasl.username/sasl.password in "
                         "producer_consumer_security_config)")


_CLIENT_SECTIONS = ("runengine_producer_config", "consumer_config", "producer_consumer_security_config")


def _overlay(data: Mapping, overrides: Mapping) -> dict:
    """The file's keys with ``overrides`` on top. The librdkafka sections merge setting by setting
    (an override adds or changes one setting and keeps the site's others, its password among them);
    a topic given either way replaces the file's (``topic`` would otherwise win over an overriding
    ``runengine_topics``)."""
    out = dict(data)
    if "runengine_topics" in overrides and "topic" not in overrides:
        out.pop("topic", None)
    if "bootstrap_servers" in overrides:
        out.pop("bootstrap", None)
    for key, value in overrides.items():
        site = out.get(key)
        merge = key in _CLIENT_SECTIONS and isinstance(site, Mapping) and isinstance(value, Mapping)
        out[key] = {**site, **value} if merge else value
    return out

