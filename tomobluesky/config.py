"""One typed configuration: command-line options over ``TOMOBLUESKY_*`` environment
variables (nested with ``__``, e.g. ``TOMOBLUESKY_RECON__ALGORITHM=fbp``) over a YAML
file named by ``TOMOBLUESKY_CONFIG`` (the same keys, nested as sections) over defaults.

Sections: ``recon`` (the engine), ``kafka`` (the keys of an NSLS-II kafka.yml, over the
site's file), ``stack`` (what ``tomobluesky stack`` runs); the rest are top-level keys,
the IPython profile's among them. docs/configuration.md lists every setting."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from .limits import check_memory_budget_gb
from .schema import ReconSettings
from .services.stack_config import StackSection


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tomobluesky")) / "catalog"


CONFIG_ENV = "TOMOBLUESKY_CONFIG"
SECRET_MARK = "********"  # how `tomobluesky config` prints a secret; read back, it counts as not given
_SECRET_WORDS = ("password", "secret")
_CLIENT_SECTIONS = ("runengine_producer_config", "consumer_config", "producer_consumer_security_config")
# a file named by load_settings(path) instead of $TOMOBLUESKY_CONFIG (`tomobluesky stack --config FILE`)
_FILE: ContextVar[Path | None] = ContextVar("tomobluesky_settings_file", default=None)


class SettingsFileError(ValueError):
    """The configuration file cannot be read, is not YAML, or holds no mapping of settings."""


def settings_file() -> Path | None:
    """The YAML file the settings are read from: load_settings' argument, else $TOMOBLUESKY_CONFIG."""
    explicit = _FILE.get()
    if explicit is not None:
        return explicit
    named = os.environ.get(CONFIG_ENV)
    return Path(named).expanduser() if named else None


def read_settings_file(path: Path) -> dict:
    """The file's settings, or one error naming the file and what is wrong with it."""
    if not path.is_file():
        how = f"${CONFIG_ENV} names" if _FILE.get() is None else "the configuration"
        raise FileNotFoundError(f"{how} {path}, which is not a file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise SettingsFileError(f"cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SettingsFileError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SettingsFileError(f"{path} must hold a mapping of settings (beamline:, recon:, kafka:, stack:, ...), "
                                f"not a {type(data).__name__}")
    return data


def load_settings(path: str | Path | None = None, **values) -> "Settings":
    """The settings with ``path`` as the configuration file instead of $TOMOBLUESKY_CONFIG
    (the environment and ``values`` still win over it)."""
    token = _FILE.set(Path(path).expanduser() if path else None)
    try:
        return Settings(**values)
    finally:
        _FILE.reset(token)


def is_secret_key(key: str) -> bool:
    """A librdkafka setting holding a secret: sasl.password, ssl.key.password, ...client.secret."""
    return any(word in key.lower() for word in _SECRET_WORDS)


class KafkaSection(BaseModel):
    """The ``kafka`` section: the keys of an NSLS-II kafka.yml, every one optional. Given here they
    win over the site's file (``config_file``, else $TOMOBLUESKY_KAFKA_CONFIG,
    $BLUESKY_KAFKA_CONFIG_PATH, /etc/bluesky/kafka.yml); the TOMOBLUESKY_KAFKA_* variables of
    :mod:`tomobluesky.transport._config` win over both. :meth:`Settings.kafka_config` resolves it."""

    model_config = ConfigDict(extra="forbid")

    config_file: Path | None = Field(None, description="the site's kafka.yml to start from (default: "
                                     "$TOMOBLUESKY_KAFKA_CONFIG, $BLUESKY_KAFKA_CONFIG_PATH, /etc/bluesky/kafka.yml "
                                     "when it exists)")
    bootstrap_servers: list[str] | str | None = Field(None, description="brokers: a list or 'h:p,h:p'")
    beamline: str | None = Field(None, description="topic <beamline, lower-cased>.bluesky.runengine.documents "
                                 "(default: the file's, else the top-level beamline)")
    topic: str | None = Field(None, description="an explicit document topic ('{endstation}' allowed)")
    runengine_topics: list[str] | None = Field(None, description="nslsii's topic list; the first is ours")
    runengine_producer_config: dict[str, Any] | None = Field(None, description="site librdkafka producer settings")
    consumer_config: dict[str, Any] | None = Field(None, description="site librdkafka consumer settings")
    producer_consumer_security_config: dict[str, Any] | None = Field(
        None, description="SASL/SSL settings for every client; credentials from TOMOBLUESKY_KAFKA_SASL_USERNAME "
        "and TOMOBLUESKY_KAFKA_SASL_PASSWORD_FILE")
    abort_run_on_kafka_exception: bool | None = Field(None, description="a publish error aborts the run "
                                                      "(false: logged, the scan goes on)")
    journal_dir: Path | None = Field(None, description="the publisher's on-disk journal for outages (default: "
                                     "platformdirs' user state dir/kafka-journal)")
    queue_size: int | None = Field(None, gt=0, description="documents between the RunEngine and the sender")
    max_message_bytes: int | None = Field(None, gt=0, description="larger documents are refused by name")

    def overrides(self) -> dict:
        """The keys given here, as kafka.yml has them; a masked secret counts as not given, so the
        file's or the environment's value stays."""
        data = self.model_dump(exclude_none=True, exclude={"config_file"})
        for key in _CLIENT_SECTIONS:
            if key in data:
                data[key] = {k: v for k, v in data[key].items() if v != SECRET_MARK}
        if "journal_dir" in data:
            data["journal_dir"] = str(data["journal_dir"])
        return data

    @classmethod
    def of(cls, config, *, mask: bool = True) -> "KafkaSection":
        """The section that reads back to ``config`` (a transport KafkaConfig), secrets masked."""
        def shown(section) -> dict:
            return {k: (SECRET_MARK if mask and is_secret_key(k) else v) for k, v in section.items()}

        return cls(config_file=config.source, bootstrap_servers=config.bootstrap.split(","),
                   beamline=config.beamline, topic=config.topic,
                   runengine_producer_config=shown(config.producer_config),
                   consumer_config=shown(config.consumer_config),
                   producer_consumer_security_config=shown(config.security_config),
                   abort_run_on_kafka_exception=config.abort_run_on_kafka_exception,
                   journal_dir=config.journal_dir, queue_size=config.queue_size,
                   max_message_bytes=config.max_message_bytes)


class Settings(BaseSettings):
    # extra="forbid": a misspelt key in the YAML file is an error naming it, not a setting silently unused
    model_config = SettingsConfigDict(env_prefix="TOMOBLUESKY_", env_nested_delimiter="__", extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments (the command line's), then the environment, then the YAML file of $TOMOBLUESKY_CONFIG."""
        sources = [init_settings, env_settings]
        path = settings_file()
        if path is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=read_settings_file(path)))
        return tuple(sources)

    data_dir: Path = Field(default_factory=default_data_dir, description="catalogue data directory")
    tiled_uri: str | None = Field(None, description="an existing Tiled server to write to")
    tiled_api_key: str | None = None
    beamline: str = "tomo"
    kafka_bootstrap: str | None = Field(None, description="publish documents to this Kafka (the profile, the "
                                        "demo); wins over the kafka section's and the site file's servers")
    kafka: KafkaSection = Field(default_factory=KafkaSection, description="Kafka clients: the keys of an "
                                "NSLS-II kafka.yml, over the site's file")
    recon: ReconSettings = Field(default_factory=ReconSettings)
    volume_dir: Path | None = Field(None, description="where reconstructed volumes (Zarr stores) are written; "
                                    "the Tiled server must be able to read it (default: <data_dir>/volumes)")
    memory_budget_gb: float = Field(2.0, description="peak resident memory of the stop path, GB: > 0 and at most "
                                    "this machine's memory")
    data_roots: list[Path] | None = Field(None, description="directories detector files may be read from; "
                                          "documents naming files elsewhere are refused "
                                          "(default: <data_dir>/detector). Env: a JSON list")
    pipeline_file: Path | None = Field(None, description="a YAML file with the processing steps of every scan "
                                       "that names none (docs/steps.md); read into recon.pipeline")
    dask_scheduler: str | None = Field(None, description="run the stop path's slabs on Dask: 'local' (a cluster of "
                                       "this machine's cores) or a scheduler address (tcp://host:8786) whose "
                                       "workers share the filesystem; unset: in this process")
    # the IPython profile (profile_collection/startup)
    source: Literal["replay", "phantom"] = Field("replay", description="profile: what the simulated camera sees, "
                                                 "the replayed tooth scan or a phantom")
    md_dir: Path | None = Field(None, description="profile: the RunEngine's persistent metadata (scan_id keeps "
                                "counting across restarts; default: <data_dir>/runengine-md)")
    local_tiled_nice: int = Field(10, ge=0, le=19, description="profile: with no tiled_uri, the Tiled server it "
                                  "starts runs this many steps below the RunEngine's CPU priority, so that "
                                  "where cores are few the scan gets the CPU first (0: the same priority)")
    headless: bool = Field(False, description="profile: no plot windows; the live figure is saved as PNGs in "
                           "<data_dir>/live-png")
    stack: StackSection = Field(default_factory=StackSection, description="what `tomobluesky stack` runs "
                                "(docs/deploy.md); beamline, data_dir, data_roots, memory_budget_gb and "
                                "recon.algorithm are shared with the rest")

    @model_validator(mode="after")
    def _read_pipeline_file(self):
        if self.pipeline_file is not None and self.recon.pipeline is None:
            from .steps import Pipeline

            spec = Pipeline.spec_from_yaml(self.pipeline_file)
            self.recon = ReconSettings(**{**self.recon.model_dump(exclude_unset=True), "pipeline": spec})
        return self

    @field_validator("tiled_api_key")
    @classmethod
    def _mask_is_no_key(cls, value: str | None) -> str | None:
        return None if value == SECRET_MARK else value  # a file printed by `tomobluesky config`

    @field_validator("memory_budget_gb")
    @classmethod
    def _budget_fits_the_machine(cls, value: float) -> float:
        return check_memory_budget_gb(value)

    @property
    def roots(self) -> list[Path]:
        return list(self.data_roots) if self.data_roots else [self.data_dir / "detector"]

    @property
    def volumes(self) -> Path:
        return self.volume_dir or self.data_dir / "volumes"

    @property
    def runengine_md(self) -> Path:
        return self.md_dir or self.data_dir / "runengine-md"

    def kafka_config(self, config_file: str | Path | None = None):
        """The Kafka clients' configuration (a transport KafkaConfig): the site's kafka.yml
        (``config_file``, else the section's, else the NSLS-II search), the ``kafka`` section over it,
        the TOMOBLUESKY_KAFKA_* variables over both, then ``kafka_bootstrap``. The top-level beamline
        is a default only: a site file's beamline wins over it, as with nslsii."""
        from .transport import load_config

        config = load_config(config_file or self.kafka.config_file, default_beamline=self.beamline,
                             overrides=self.kafka.overrides())
        return config.replace(bootstrap=self.kafka_bootstrap) if self.kafka_bootstrap else config
