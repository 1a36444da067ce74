"""The service set's configuration: the ``stack`` section of the one settings model
(:class:`tomobluesky.config.Settings`), read from the same YAML file as every other
command, with the shared keys taken from the rest of that file.

Every section is a pydantic model, so a typo or a bad value is one clear error
naming the key, before anything starts. The file holds no secret: keys and
passwords live in files (0600) that the configuration names by path, so the
whole model can be printed (``tomobluesky stack config``). Should a secret field
be added, type it ``SecretStr``: :func:`masked` prints it as ``**********``.

A port of 0 means "a free one, chosen at ``stack up`` and kept in the stack's
state file", which is what tests and a second stack on one host want.

    beamline: bm05                        # shared: the topic, the profile, the workers
    data_dir: /srv/tomobluesky/catalog    # shared: the catalogue (default here: <stack.paths.root>/catalog)
    memory_budget_gb: 4                   # shared: each reconstruction worker's stop path
    recon: {algorithm: fbp}               # shared: the workers' reconstruction
    stack:
      kafka: {port: 9092}
      workers: {reconstruction: 4}
      dask: {workers: 2}
      paths: {root: /srv/tomobluesky}

Environment variables override the file: ``TOMOBLUESKY_STACK__WORKERS__RECONSTRUCTION=4``.
:class:`StackSettings` is what the stack runs from: the section with the shared keys filled in.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class StackWorkers(_Section):
    reconstruction: int = Field(2, ge=0, le=64, description="reconstruction workers in one consumer group")
    catalog: int = Field(1, ge=0, le=16, description="catalogue writers (TiledWriter) in one consumer group")
    run_timeout_s: float = Field(3600.0, ge=0, description="close a run silent this long as failed; 0: never")
    session_timeout_s: float = Field(10.0, ge=6, le=300, description="how long the broker waits for a worker "
                                     "that vanished (SIGKILL, a lost host) before giving its partitions to the "
                                     "others; librdkafka's default is 45 s")


class WorkersSection(StackWorkers):
    """The workers as the stack runs them: the shared recon.algorithm and memory_budget_gb added."""

    algorithm: str | None = Field(None, description="reconstruction algorithm (default: the engine's)")
    memory_budget_gb: float = Field(2.0, gt=0, description="stop-path memory budget per worker, GB")


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


class StackPaths(_Section):
    root: Path = Field(default_factory=lambda: default_root(),
                       description="everything the stack writes: state, sockets, configs, data")
    logs: Path | None = Field(None, description="one directory for every service's log (default: <root>/logs)")


class PathsSection(StackPaths):
    """The stack's paths with the shared data_dir (catalog) and data_roots added."""

    catalog: Path | None = Field(None, description="Tiled data directory: keys, volumes, detector files, arrays "
                                 "(default: <root>/catalog)")
    data_roots: list[Path] | None = Field(None, description="where workers may read detector files "
                                          "(default: <catalog>/detector)")

    def resolved(self) -> "PathsSection":
        root = self.root.expanduser().resolve()
        catalog = (self.catalog or root / "catalog").expanduser().resolve()
        return PathsSection(root=root, logs=(self.logs or root / "logs").expanduser().resolve(), catalog=catalog,
                            data_roots=[p.expanduser().resolve() for p in self.data_roots or [catalog / "detector"]])


class StackSection(_Section):
    """The ``stack`` section of the settings: which services run and how. The beamline, the
    catalogue (data_dir), data_roots, memory_budget_gb and recon.algorithm are the settings'
    own, shared with every other command."""

    kafka: KafkaSection = Field(default_factory=KafkaSection)
    tiled: TiledSection = Field(default_factory=TiledSection)
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    workers: StackWorkers = Field(default_factory=StackWorkers)
    dask: DaskSection = Field(default_factory=DaskSection)
    viewer: ViewerSection = Field(default_factory=ViewerSection)
    paths: StackPaths = Field(default_factory=StackPaths)


class StackSettings(_Section):
    """The whole service set on one host, as the stack runs it. Read with :func:`load_stack_settings`
    (the ``stack`` section with the shared settings filled in) or built directly."""

    beamline: str = Field("tomo", pattern=r"^[A-Za-z0-9_.-]+$",
                          description="the document topic is <beamline>.bluesky.runengine.documents")
    kafka: KafkaSection = Field(default_factory=KafkaSection)
    tiled: TiledSection = Field(default_factory=TiledSection)
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    workers: WorkersSection = Field(default_factory=WorkersSection)
    dask: DaskSection = Field(default_factory=DaskSection)
    viewer: ViewerSection = Field(default_factory=ViewerSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    config_file: Path | None = Field(None, exclude=True, description="the file these came from; the stack's "
                                     "workers and viewer read it too ($TOMOBLUESKY_CONFIG)")

    @classmethod
    def from_settings(cls, settings, config_file: Path | None = None) -> "StackSettings":
        """The ``stack`` section of ``settings`` (a :class:`tomobluesky.config.Settings`) with the shared
        keys filled in. data_dir counts only when set (its default is a per-user directory; the
        stack's catalogue defaults to <paths.root>/catalog)."""
        s, given = settings.stack, settings.model_fields_set
        algorithm = settings.recon.algorithm if "algorithm" in settings.recon.model_fields_set else None
        return cls(beamline=settings.beamline, kafka=s.kafka, tiled=s.tiled, postgres=s.postgres, dask=s.dask,
                   viewer=s.viewer, config_file=config_file,
                   workers=WorkersSection(**s.workers.model_dump(), algorithm=algorithm,
                                          memory_budget_gb=settings.memory_budget_gb),
                   paths=PathsSection(**s.paths.model_dump(),
                                      catalog=settings.data_dir if "data_dir" in given else None,
                                      data_roots=settings.data_roots))


class StackConfigError(ValueError):
    """The stack's YAML configuration cannot be read or is invalid."""


_OLD_PREFIX = "TOMOBLUESKY_STACK_"


def load_stack_settings(path: str | Path | None = None, environ=None) -> StackSettings:
    """The stack's settings from ``path`` (default: $TOMOBLUESKY_CONFIG, else the built-in defaults),
    the environment over the file (TOMOBLUESKY_STACK__WORKERS__RECONSTRUCTION=4, TOMOBLUESKY_BEAMLINE)."""
    from ..config import SettingsFileError, load_settings, settings_file

    environ = os.environ if environ is None else environ
    old = sorted(k for k in environ if k.startswith(_OLD_PREFIX) and not k.startswith(_OLD_PREFIX[:-1] + "__"))
    if old:  # the stack's own variables before it joined the common settings: refused, not ignored
        raise StackConfigError(f"{old[0]} is no longer read: the stack's settings are the 'stack' section, "
                               f"e.g. TOMOBLUESKY_STACK__{old[0][len(_OLD_PREFIX):]}")
    try:
        settings = load_settings(path)
    except (OSError, SettingsFileError) as err:
        raise StackConfigError(str(err)) from None
    except ValidationError as err:
        where = Path(path).expanduser() if path else settings_file()
        errors = err.errors(include_url=False)
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        hint = " (the stack's sections go under 'stack:', docs/deploy.md)" if any(map(_old_layout, errors)) else ""
        raise StackConfigError(f"{where or 'the stack settings'}: {problems}{hint}") from None
    return StackSettings.from_settings(settings, Path(path).expanduser().resolve() if path else settings_file())


def _old_layout(error: dict) -> bool:
    """A stack section at the top of the file, as the stack's own file had them."""
    loc = error["loc"]
    if error["type"] != "extra_forbidden":
        return False
    return loc[0] in ("tiled", "postgres", "workers", "dask", "viewer", "paths") or (
        loc[0] == "kafka" and len(loc) > 1 and loc[1] in KafkaSection.model_fields)


def masked(settings: StackSettings) -> dict:
    """The settings as plain data, every ``SecretStr`` shown as ``**********``."""
    return settings.model_dump(mode="json")
