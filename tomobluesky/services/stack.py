"""The whole service set on one host, supervised: ``tomobluesky stack up|status|down``.

    postgres        the catalogue's PostgreSQL (unix socket, peer authentication)
    kafka           single-node KRaft broker
    tiled           ``tiled serve config``: catalogue in PostgreSQL, keys in <catalog>/keys
    dask-scheduler  ``dask scheduler``, and ``dask-worker`` (N) connected to it
    reconstruction  N live-reconstruction workers in one consumer group
    catalog         the catalogue writer(s) (raw runs into Tiled)
    viewer          ``tomobluesky view``

supervisord (from PyPI) runs and restarts them all; ``up`` generates its
configuration from :class:`~tomobluesky.services.stack_config.StackSettings`,
starts the daemon, then the services in dependency order, each when the ones
it needs answer. Everything lives under ``paths.root``::

    ROOT/stack.json          ports chosen at `up` (a port of 0 in the settings is a free one)
    ROOT/run/                supervisord.conf (0600), its socket and pid file
    ROOT/logs/               every service's log, and supervisord's
    ROOT/postgres/ ROOT/kafka/ ROOT/catalog/ ROOT/dask/   the services' data

No key is on any command line: the workers get ``--api-key-file``, Tiled checks
keys against the hashes in its auth database, the viewer holds none (readers
bring theirs), and PostgreSQL needs none (peer authentication).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..keys import KEY_ENV, new_key, write_secret
from ._stack_probes import dask_workers, group_members, http_ok, port_open, tiled_ready
from .postgres import PostgresCluster, find_bin_dir
from .stack_config import StackSettings
from .supervisor import Program, Supervisor, SupervisorError, pid_alive

STATE_FILE = "stack.json"
RECON_GROUP = "tomobluesky-reconstruction"  # as tomobluesky.workers names them
CATALOG_GROUP = "tomobluesky-catalog"


class StackError(RuntimeError):
    """The stack could not be brought up, asked or brought down."""


@dataclass
class Ports:
    kafka: int
    kafka_controller: int
    tiled: int
    postgres: int
    dask_scheduler: int
    dask_dashboard: int
    viewer: int


@dataclass
class ServiceHealth:
    """One row of ``stack status``."""

    service: str
    processes: list[dict]  # name, state, pid
    address: str
    healthy: bool
    detail: str


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One stack, by its settings. Methods are safe to call from any process: the state is on disk."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.paths = settings.paths.resolved()
        self.root: Path = self.paths.root
        self.supervisor = Supervisor(self.root / "run", self.paths.logs)
        self.postgres = PostgresCluster(self.root / "postgres", settings.postgres.port,
                                        find_bin_dir(settings.postgres.bin_dir), settings.postgres.run_as,
                                        settings.postgres.listen)

    # layout ------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def catalog_layout(self):
        from ..catalog import CatalogLayout

        return CatalogLayout(self.paths.catalog)

    def ports(self) -> Ports | None:
        """The ports recorded at the last ``up``, or None."""
        try:
            return Ports(**json.loads(self.state_file.read_text())["ports"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _choose_ports(self) -> Ports:
        """The configured ports; a 0 takes the port used last time, else a free one."""
        s, last = self.settings, self.ports()

        def pick(configured: int, field: str) -> int:
            if configured:
                return configured
            previous = getattr(last, field, None) if last else None
            return previous if previous and not port_open(previous) else _free_port()

        return Ports(kafka=pick(s.kafka.port, "kafka"), kafka_controller=pick(s.kafka.controller_port,
                                                                            "kafka_controller"),
                     tiled=pick(s.tiled.port, "tiled"), postgres=s.postgres.port,
                     dask_scheduler=pick(s.dask.scheduler_port, "dask_scheduler"),
                     dask_dashboard=pick(s.dask.dashboard_port, "dask_dashboard"),
                     viewer=pick(s.viewer.port, "viewer"))

    # the programs ------------------------------------------------------------------------------
    def programs(self, ports: Ports, kafka_command: list[str]) -> list[Program]:
        """What supervisord runs, in start order. Commands carry paths and ports, never a key."""
        s, py = self.settings, sys.executable
        layout = self.catalog_layout
        from ..catalog import tiled_command

        bootstrap = f"127.0.0.1:{ports.kafka}"
        tiled_uri = f"http://127.0.0.1:{ports.tiled}"
        progs = [
            Program("postgres", self.postgres.server_command(), user=self.postgres.server_user if os.geteuid() == 0
                    else None, stopsignal="INT", directory="/"),  # INT: PostgreSQL's fast shutdown
            Program("kafka", kafka_command, directory=str(self.root / "kafka"), startsecs=2),
            Program("tiled", tiled_command(layout, ports.tiled), directory=str(layout.root), startsecs=2),
        ]
        if s.dask.workers:
            dask = str(Path(py).with_name("dask"))
            progs.append(Program("dask-scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port",
                                                    str(ports.dask_scheduler), "--dashboard-address",
                                                    f"127.0.0.1:{ports.dask_dashboard}", "--no-show"],
                                 directory=str(self.root / "dask")))
            progs.append(Program("dask-worker", [dask, "worker", f"tcp://127.0.0.1:{ports.dask_scheduler}",
                                                 "--host", "127.0.0.1", "--nthreads",
                                                 str(s.dask.threads_per_worker), "--memory-limit",
                                                 s.dask.memory_limit, "--local-directory",
                                                 str(self.root / "dask"), "--no-dashboard"],
                                 numprocs=s.dask.workers, directory=str(self.root / "dask")))
        worker = [py, "-m", "tomobluesky.workers"]
        common = ["--bootstrap", bootstrap, "--beamline", s.beamline, "--tiled-uri", tiled_uri,
                  "--api-key-file", str(layout.key_file), "--config", str(self._worker_kafka_config())]
        for root in self.paths.data_roots:
            common += ["--data-root", str(root)]
        if s.workers.reconstruction:
            recon = [*worker, "reconstruction", *common, "--volume-dir", str(layout.volumes), "--group", RECON_GROUP,
                     "--memory-budget", str(s.workers.memory_budget_gb),
                     "--run-timeout", str(s.workers.run_timeout_s)]
            if s.workers.algorithm:
                recon += ["--algorithm", s.workers.algorithm]
            progs.append(Program("reconstruction", recon, numprocs=s.workers.reconstruction,
                                 directory=str(layout.root)))
            if s.dask.workers:  # the stop path's slabs go to the stack's Dask workers (same host, same files)
                progs[-1].environment["TOMOBLUESKY_DASK_SCHEDULER"] = f"tcp://127.0.0.1:{ports.dask_scheduler}"
        if s.workers.catalog:
            progs.append(Program("catalog", [*worker, "catalog", *common, "--group", CATALOG_GROUP,
                                             "--run-timeout", str(s.workers.run_timeout_s)],
                                 numprocs=s.workers.catalog, directory=str(layout.root)))
        if s.viewer.enabled:
            progs.append(Program("viewer", [py, "-m", "tomobluesky.cli", "view", "--uri", tiled_uri, "--host",
                                            "127.0.0.1", "--port", str(ports.viewer)], directory=str(self.root)))
        for p in progs:
            p.environment.setdefault("PYTHONUNBUFFERED", "1")
            if s.config_file and p.command[0] == py:  # our own programs read the same settings file
                p.environment.setdefault("TOMOBLUESKY_CONFIG", str(s.config_file))
        return progs

    # up ----------------------------------------------------------------------------------------
    def is_up(self) -> bool:
        return self.supervisor.pid() is not None

    def up(self, timeout: float = 180.0) -> list[ServiceHealth]:
        """Prepare what is missing, start supervisord and every service; return when all answer."""
        if self.is_up():
            raise StackError(f"the stack in {self.root} is already up (supervisord pid {self.supervisor.pid()}); "
                             f"`tomobluesky stack status` shows it, `tomobluesky stack down` stops it")
        ports = self._choose_ports()
        self._check_ports_free(ports)
        keys = self._prepare(ports)
        from ._stack_kafka import prepare_broker

        kafka_command = prepare_broker(self.root / "kafka", ports.kafka, ports.kafka_controller,
                                       heap=self.settings.kafka.heap, version=self.settings.kafka.version)
        programs = self.programs(ports, kafka_command)
        self.supervisor.write(programs, secrets=list(keys.values()))
        write_secret(self.state_file, json.dumps({"ports": asdict(ports), "started": time.time()}, indent=1))
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}  # no key is inherited by a service
        self.supervisor.start(env)
        try:
            self._start_in_order(programs, ports, keys, time.monotonic() + timeout)
        except BaseException:
            self.down()
            raise
        return self.status()

    def _worker_kafka_config(self) -> Path:
        """The workers' Kafka settings file: the consumer's session timeout, so that a killed worker's
        partitions move to the others in seconds rather than librdkafka's 45 s."""
        import yaml

        path = self.root / "kafka-workers.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        ms = int(self.settings.workers.session_timeout_s * 1000)
        path.write_text(yaml.safe_dump({"consumer_config": {"session.timeout.ms": ms}}))
        return path

    def _check_ports_free(self, ports: Ports) -> None:
        wanted = {"kafka": ports.kafka, "kafka controller": ports.kafka_controller, "tiled": ports.tiled,
                  "viewer": ports.viewer if self.settings.viewer.enabled else 0,
                  "dask scheduler": ports.dask_scheduler if self.settings.dask.workers else 0,
                  "dask dashboard": ports.dask_dashboard if self.settings.dask.workers else 0,
                  "postgres": ports.postgres if self.settings.postgres.listen else 0}
        busy = [f"{name} ({port})" for name, port in wanted.items() if port and port_open(port)]
        if busy:
            raise StackError(f"ports already in use: {', '.join(busy)}; set other ports (or 0 for free ones) "
                             f"in the stack configuration")

    def _prepare(self, ports: Ports) -> dict[str, str]:
        """Directories, the PostgreSQL cluster, Tiled's keys and configuration; returns the keys."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.root.chmod(0o711)  # PostgreSQL's own user walks through to ROOT/postgres
        else:
            self.root.chmod(0o700)
        for d in (self.root / "kafka", self.root / "dask", self.paths.logs):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.postgres.initialise()
        layout = self.catalog_layout.create()
        keys = self._provision_keys(layout)
        config = layout.server_config(self.settings.tiled.public)
        db = self.settings.postgres
        config["catalog"]["uri"] = self.postgres.sqlalchemy_uri(db.database)
        config["catalog"]["writable_storage"] = [str(layout.arrays), self.postgres.libpq_uri(db.tabular_database)]
        config["catalog"]["readable_storage"] = sorted({*map(str, self.paths.data_roots), str(layout.volumes)})
        write_secret(layout.config_file, json.dumps(config, indent=2))
        return keys

    @staticmethod
    def _provision_keys(layout) -> dict[str, str]:
        """The writer and reader keys: stored ones kept, missing ones made and registered in auth.db."""
        from ..catalog._auth import provision

        keys = {kind: layout.stored_key(kind) or new_key() for kind in ("writer", "reader")}
        missing = [kind for kind in keys if not layout.key_path(kind).exists()]
        if missing or not layout.auth_db.exists():
            provision(layout.auth_db, keys)
            for kind in missing:
                write_secret(layout.key_path(kind), keys[kind] + "\n")
        return keys

    def _start_in_order(self, programs: list[Program], ports: Ports, keys: dict, deadline: float) -> None:
        # Tiled's start-up (imports, then its schema in PostgreSQL) is the longest and everything
        # waits for it, so on a busy machine it gets the CPU first: the Dask worker and the viewer
        # start once Kafka answers, the workers (which need Kafka and Tiled) once Tiled answers.
        names = [p.name for p in programs]
        sup = self.supervisor
        for first in ("postgres", "kafka", "dask-scheduler"):
            if first in names:
                sup.start_group(first)
        self._wait("postgres", self.postgres.is_ready, deadline)
        db = self.settings.postgres
        self.postgres.ensure_database(db.database, db.tabular_database)
        sup.start_group("tiled")
        from .kafka import broker_is_ready

        self._wait("kafka", lambda: broker_is_ready(f"127.0.0.1:{ports.kafka}", 1.0), deadline)
        self._ensure_topics(ports)
        for later in ("dask-worker", "viewer"):
            if later in names:
                sup.start_group(later)
        self._wait("tiled", lambda: tiled_ready(ports.tiled)[0], deadline)
        self._ensure_catalog_layout(ports, keys["writer"])  # before any worker reads a document
        for worker in ("catalog", "reconstruction"):
            if worker in names:
                sup.start_group(worker)
        self._wait("every service", lambda: all(h.healthy for h in self.status()), deadline)

    def _wait(self, what: str, ready, deadline: float) -> None:
        while time.monotonic() < deadline:
            if ready():
                return
            self._fail_on_fatal()
            time.sleep(0.2)
        unhealthy = [f"{h.service}: {h.detail}" for h in self.status() if not h.healthy]
        raise StackError(f"{what} did not become ready in time ({'; '.join(unhealthy) or 'no detail'}); "
                         f"logs in {self.paths.logs}")

    def _fail_on_fatal(self) -> None:
        """A program supervisord gave up on (FATAL) will not come: say which, with its log's end."""
        for name, info in self.supervisor.processes().items():
            if info["statename"] == "FATAL":
                log = self.paths.logs / f"{info['name']}.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise StackError(f"{name} keeps exiting (supervisord gave up on it); {log}:\n{tail}")

    def _ensure_topics(self, ports: Ports) -> None:
        from ..transport import KafkaConfig, ensure_topics

        ensure_topics(KafkaConfig(bootstrap=f"127.0.0.1:{ports.kafka}", beamline=self.settings.beamline),
                      partitions=self.settings.kafka.partitions)

    @staticmethod
    def _ensure_catalog_layout(ports: Ports, writer_key: str) -> None:
        from tiled.client import from_uri

        from ..catalog import ensure_layout

        ensure_layout(from_uri(f"http://127.0.0.1:{ports.tiled}", api_key=writer_key))

    # status ------------------------------------------------------------------------------------
    def status(self) -> list[ServiceHealth]:
        """Each service's processes (supervisord's state and pid), address and a probe of the service."""
        ports = self.ports()
        procs = self.supervisor.processes()
        if ports is None or not procs:
            return []
        rows = []
        for group, address, probe in self._probes(ports):
            mine = [{"name": n, "state": i["statename"], "pid": i["pid"] or None}
                    for n, i in procs.items() if i["group"] == group]
            if not mine:
                continue
            running = all(p["state"] == "RUNNING" for p in mine)
            ok, detail = probe(len(mine)) if running else (False, "not running")
            rows.append(ServiceHealth(group, mine, address, running and ok, detail))
        return rows

    def _probes(self, ports: Ports):
        from .kafka import broker_is_ready

        bootstrap = f"127.0.0.1:{ports.kafka}"
        pg = self.postgres

        def members(group):
            def probe(n):
                got = group_members(bootstrap, group)
                return (got is not None and got >= n), f"{got if got is not None else '?'}/{n} in group {group}"
            return probe

        def dask_probe(n):
            got = dask_workers(ports.dask_dashboard)
            return (got is not None and got >= n), f"{got if got is not None else '?'}/{n} workers at the scheduler"

        return [
            ("postgres", f"unix:{pg.socket_file}", lambda n: (pg.is_ready(), "pg_isready")),
            ("kafka", bootstrap, lambda n: (broker_is_ready(bootstrap, 1.0), "metadata request")),
            ("tiled", f"http://127.0.0.1:{ports.tiled}", lambda n: tiled_ready(ports.tiled)),
            ("dask-scheduler", f"tcp://127.0.0.1:{ports.dask_scheduler} (dashboard "
                               f"http://127.0.0.1:{ports.dask_dashboard})",
             lambda n: http_ok(ports.dask_dashboard, "/health")),
            ("dask-worker", f"tcp://127.0.0.1:{ports.dask_scheduler}", dask_probe),
            ("reconstruction", f"kafka {bootstrap}", members(RECON_GROUP)),
            ("catalog", f"kafka {bootstrap}", members(CATALOG_GROUP)),
            ("viewer", f"http://127.0.0.1:{ports.viewer}/", lambda n: http_ok(ports.viewer, "/")),
        ]

    # down --------------------------------------------------------------------------------------
    def down(self, timeout: float = 120.0) -> dict:
        """Stop every service and supervisord; report any process or port left (there should be none)."""
        pids = [p["pid"] for p in self.supervisor.processes().values() if p["pid"]]
        tree = {d for pid in pids for d in descendants(pid)} | set(pids)
        daemon = self.supervisor.pid()
        try:
            self.supervisor.shutdown(timeout)
        except SupervisorError as err:
            raise StackError(str(err)) from None
        left = sorted(pid for pid in tree if pid_alive(pid))
        ports = self.ports()
        tcp = {k: v for k, v in asdict(ports).items() if k != "postgres" or self.settings.postgres.listen} \
            if ports else {}
        busy = [f"{name} {port}" for name, port in tcp.items() if port_open(port)]
        if self.postgres.socket_file.exists():
            busy.append(str(self.postgres.socket_file))
        return {"stopped": daemon is not None, "processes": len(tree), "left_running": left, "ports_in_use": busy}


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
