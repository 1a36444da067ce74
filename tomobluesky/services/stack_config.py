"""The service set's configuration: one YAML file read into a typed model.

Every section is a pydantic model, so a typo or a bad value is one clear error
naming the key, before anything starts. The file holds no secret: keys and
passwords live in files (0600) that the configuration names by path, so the
whole model can be printed (``tomobluesky stack config``). Should a secret field
be added, type it ``SecretStr``: :func:`masked` prints it as ``**********``.

A port of 0 means "a free one, chosen at ``stack up`` and kept in the stack's
state file", which is what tests and a second stack on one host want.

    kafka: {port: 9092}
    workers: {reconstruction: 4}
    dask: {workers: 2}
    paths: {root: /srv/tomobluesky}

Environment variables override the file: ``TOMOBLUESKY_STACK_WORKERS__RECONSTRUCTION=4``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSection(_Section):
    port: int = Field(9092, ge=0, le=65535, description="client (PLAINTEXT) port on 127.0.0.1; 0: a free one")
    controller_port: int = Field(9093, ge=0, le=65535, description="KRaft controller port; 0: a free one")
    heap: str = Field("512m", pattern=r"^[0-9]+[kmgKMG]$", description="JVM heap, e.g. 512m")
    version: str | None = Field(None, description="kafka_2.13 version (default: the package's pinned one)")
    partitions: int = Field(4, ge=1, le=256, description="partitions of the document topic: at most this many "
                            "reconstruction workers share the scans")


class TiledSection(_Section):
    port: int = Field(8000, ge=0, le=65535, description="Tiled's HTTP port on 127.0.0.1; 0: a free one")
    public: bool = Field(False, description="anonymous reads allowed (writes always need the write key)")


class PostgresSection(_Section):
    port: int = Field(5432, ge=1, le=65535, description="the server's port: names its unix socket "
                      "(.s.PGSQL.<port>) and, with `listen`, its TCP port")
    listen: str = Field("", description="TCP addresses to listen on: '' (unix socket only, the default) or "
                        "'127.0.0.1'; never a public address: local connections use peer authentication")
    database: str = Field("tomobluesky", pattern=r"^[a-z_][a-z0-9_]*$", description="the catalogue's database")
    tabular_database: str = Field("tomobluesky_tables", pattern=r"^[a-z_][a-z0-9_]*$",
                                  description="database of the event tables Tiled appends to")
    bin_dir: Path | None = Field(None, description="directory of initdb/postgres/psql (default: the newest "
                                 "/usr/lib/postgresql/*/bin, else PATH)")
    run_as: str = Field("postgres", description="OS user the server runs as when the stack runs as root "
                        "(PostgreSQL refuses to run as root)")


class WorkersSection(_Section):
    reconstruction: int = Field(2, ge=0, le=64, description="reconstruction workers in one consumer group")
    catalog: int = Field(1, ge=0, le=16, description="catalogue writers (TiledWriter) in one consumer group")
    algorithm: str | None = Field(None, description="reconstruction algorithm (default: the engine's)")
    memory_budget_gb: float = Field(2.0, gt=0, description="stop-path memory budget per worker, GB")
    run_timeout_s: float = Field(3600.0, ge=0, description="close a run silent this long as failed; 0: never")
    session_timeout_s: float = Field(10.0, ge=6, le=300, description="how long the broker waits for a worker "
                                     "that vanished (SIGKILL, a lost host) before giving its partitions to the "
                                     "others; librdkafka's default is 45 s")


class DaskSection(_Section):
    workers: int = Field(1, ge=0, le=64, description="Dask workers (0: no scheduler or workers)")
    threads_per_worker: int = Field(1, ge=1, le=256)
    memory_limit: str = Field("2GB", pattern=r"^[0-9.]+ ?[kKMGT]?i?B$|^auto$", description="per Dask worker")
    scheduler_port: int = Field(8786, ge=0, le=65535, description="0: a free one")
    dashboard_port: int = Field(8787, ge=0, le=65535, description="0: a free one")


class ViewerSection(_Section):
    enabled: bool = True
    port: int = Field(8080, ge=0, le=65535, description="0: a free one")


def default_root() -> Path:
    """~/.local/state/tomobluesky/stack; for root /var/lib/tomobluesky/stack, since PostgreSQL then
    runs as its own user, who cannot enter root's home (0700)."""
    if os.geteuid() == 0:
        return Path("/var/lib/tomobluesky/stack")
    return Path(platformdirs.user_state_dir("tomobluesky")) / "stack"


class PathsSection(_Section):
    root: Path = Field(default_factory=lambda: default_root(),
                       description="everything the stack writes: state, sockets, configs, data")
    logs: Path | None = Field(None, description="one directory for every service's log (default: <root>/logs)")
    catalog: Path | None = Field(None, description="Tiled data directory: keys, volumes, detector files, arrays "
                                 "(default: <root>/catalog)")
    data_roots: list[Path] | None = Field(None, description="where workers may read detector files "
                                          "(default: <catalog>/detector)")

    def resolved(self) -> "PathsSection":
        root = self.root.expanduser().resolve()
        catalog = (self.catalog or root / "catalog").expanduser().resolve()
        return PathsSection(root=root, logs=(self.logs or root / "logs").expanduser().resolve(), catalog=catalog,
                            data_roots=[p.expanduser().resolve() for p in self.data_roots or [catalog / "detector"]])


class StackSettings(BaseSettings):
    """The whole service set on one host. Read with :func:`load_stack_settings`."""

    model_config = SettingsConfigDict(env_prefix="TOMOBLUESKY_STACK_", env_nested_delimiter="__", extra="forbid")

    beamline: str = Field("tomo", pattern=r"^[A-Za-z0-9_.-]+$",
                          description="the document topic is <beamline>.bluesky.runengine.documents")
    kafka: KafkaSection = Field(default_factory=KafkaSection)
    tiled: TiledSection = Field(default_factory=TiledSection)
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    workers: WorkersSection = Field(default_factory=WorkersSection)
    dask: DaskSection = Field(default_factory=DaskSection)
    viewer: ViewerSection = Field(default_factory=ViewerSection)
    paths: PathsSection = Field(default_factory=PathsSection)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource,
                                   env_settings, dotenv_settings, file_secret_settings):
        # the environment overrides the file (given as init values); no .env or secrets dir
        return env_settings, init_settings


class StackConfigError(ValueError):
    """The stack's YAML configuration cannot be read or is invalid."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("tomobluesky")) / "stack.yml"


def load_stack_settings(path: str | Path | None = None) -> StackSettings:
    """The settings from ``path`` (default: ~/.config/tomobluesky/stack.yml when it exists, else
    the built-in defaults), overridden by TOMOBLUESKY_STACK_* variables."""
    explicit = path is not None
    path = Path(path).expanduser() if explicit else default_config_path()
    data = {}
    if explicit or path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise StackConfigError(f"cannot read the stack configuration {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise StackConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise StackConfigError(f"{path} must hold a mapping of sections (kafka:, tiled:, ...), "
                                   f"not a {type(data).__name__}")
    try:
        return StackSettings(**data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False))
        raise StackConfigError(f"{path if data else 'the stack settings'}: {problems}") from None


def masked(settings: StackSettings) -> dict:
    """The settings as plain data, every ``SecretStr`` shown as ``**********``."""
    return settings.model_dump(mode="json")
