"""Start, wait for and stop a real ``tiled serve config`` process.

One data directory holds everything the catalogue needs and outlives the
process, so ``tomobluesky serve`` can serve a demo's results again:

    DIR/catalog.db     SQLite catalogue (nodes and metadata)
    DIR/tabular.db     SQLite store for event columns (TiledWriter appends rows)
    DIR/auth.db        tiled's authentication database: service principals and the keys' hashes
    DIR/tiled.yml      the server's configuration, rewritten at each start (it holds no secret)
    DIR/keys/writer    the services' key: create, write, register, delete
    DIR/keys/reader    the analysts' key: read metadata and data only
    DIR/arrays/        writable array storage (previews, uploaded arrays)
    DIR/volumes/       multiscale Zarr stores of reconstructions; served read-only
    DIR/detector/      detector HDF5 files; served read-only to clients
    DIR/backup/        JSON-lines copies of runs Tiled could not take

Directories are created 0700 and files 0600: the keys, and the catalogue's
metadata, are for the service account only.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .._ports import free_port, port_is_free
from .._priority import lower_priority
from ..keys import KEY_ENV, check_key, new_key, read_key_file, write_secret

log = logging.getLogger(__name__)

KEY_KINDS = ("writer", "reader")


class CatalogError(RuntimeError):
    """The Tiled server could not be started or reached."""


class CatalogLayout:
    """Paths inside a catalogue data directory."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).expanduser().resolve()
        self.catalog_db = self.root / "catalog.db"
        self.tabular_uri = f"sqlite:///{self.root / 'tabular.db'}"
        self.auth_db = self.root / "auth.db"
        self.config_file = self.root / "tiled.yml"
        self.keys = self.root / "keys"
        self.key_file = self.keys / "writer"  # the write key, as before
        self.reader_key_file = self.keys / "reader"
        self.arrays = self.root / "arrays"
        self.volumes = self.root / "volumes"
        self.detector = self.root / "detector"
        self.backup = self.root / "backup"
        self.log_file = self.root / "tiled-server.log"

    def key_path(self, kind: str) -> Path:
        return {"writer": self.key_file, "reader": self.reader_key_file}[kind]

    def stored_key(self, kind: str) -> str | None:
        path = self.key_path(kind)
        return read_key_file(path) if path.exists() else None

    def create(self) -> "CatalogLayout":
        if not self.root.exists():
            self.root.mkdir(mode=0o700, parents=True)
        for d in (self.keys, self.arrays, self.volumes, self.detector, self.backup):
            d.mkdir(mode=0o700, exist_ok=True)
            d.chmod(0o700)  # directories made by an older version were 0755
        for f in (self.catalog_db, self.root / "tabular.db", self.auth_db, self.log_file):
            if f.exists():
                f.chmod(0o600)
        return self

    def server_config(self, public: bool = False) -> dict:
        """The ``tiled serve config`` configuration for this directory (no secrets in it)."""
        return {
            "catalog": {"uri": f"sqlite:///{self.catalog_db}", "init_if_not_exists": True,
                        "writable_storage": [str(self.arrays), self.tabular_uri],
                        "readable_storage": [str(self.detector), str(self.volumes)]},
            "authentication": {
                # A provider switches tiled to multi-user mode, where keys carry scopes. It has no
                # users: nobody can log in, every request is a service key's (or anonymous).
                "providers": [{"provider": "keys-only", "authenticator": "tiled.authenticators:DictionaryAuthenticator",
                               "args": {"users_to_passwords": {}}}],
                "allow_anonymous_access": public},
            "database": {"uri": f"sqlite:///{self.auth_db}", "init_if_not_exists": False},
        }


def _tiled_executable() -> str:
    exe = Path(sys.executable).with_name("tiled")
    return str(exe) if exe.exists() else (shutil.which("tiled") or "tiled")


def tiled_command(layout: CatalogLayout, port: int, *, host: str = "127.0.0.1") -> list[str]:
    """The server's command line: paths and a port, never a key (every local user can read it)."""
    return [_tiled_executable(), "serve", "config", str(layout.config_file), "--host", host, "--port", str(port)]


def _own_process_group() -> dict:
    """Popen arguments that start the child in a process group of its own, in this session."""
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # Python 3.10: one system call between fork and exec


class TiledServer:
    """A ``tiled serve`` child process over one data directory, with a write key for the
    services and a read-only key for analysts (created at the first start, kept in DIR/keys/).

    >>> with TiledServer("~/tomo-catalog") as server:
    ...     client = server.client()          # writes
    ...     analyst = server.reader_client()  # reads only

    ``writer_key``/``reader_key`` adopt keys of your own (at least 32 hex digits) at the
    first start; a different key for a directory that already has one is refused.

    ``nice`` (Linux niceness, 0-19) runs the server, once started, at a lower CPU priority than this
    process: its threads' niceness and its session's autogroup (see :mod:`tomobluesky._priority`). A server
    on the acquisition host answers the catalogue writer during every scan; where cores are few, a
    niced server leaves the RunEngine the CPU it asks for and catches up between frames (it costs
    nothing when the machine is otherwise idle, as after the stop). ``idle`` also puts it under the
    ``SCHED_IDLE`` policy (Linux): it then runs only on CPU time nothing else in this session wants, and a
    waking RunEngine thread takes its core at once. Such a server is kept in this process's session (its own
    process group, so Ctrl-C at the prompt still does not reach it), because the policy only ranks threads
    of one session against each other.
    """

    def __init__(self, data_dir: str | Path, *, port: int | None = None, writer_key: str | None = None,
                 reader_key: str | None = None, public: bool = False, startup_timeout: float = 60.0,
                 nice: int = 0, idle: bool = False):
        if not 0 <= int(nice) <= 19:
            raise ValueError(f"nice must be between 0 and 19 (Linux niceness), got {nice}")
        given = {kind: check_key(key, f"the {kind} key given") for kind, key in
                 (("writer", writer_key), ("reader", reader_key)) if key is not None}  # before touching the disk
        self.layout = CatalogLayout(data_dir).create()
        self._keys = {kind: self._resolve_key(kind, given.get(kind)) for kind in KEY_KINDS}
        self.port = port or free_port()
        self.public = public
        self.startup_timeout = startup_timeout
        self.nice = int(nice)
        self.idle = bool(idle)
        self._proc: subprocess.Popen | None = None

    def _resolve_key(self, kind: str, given: str | None) -> str:
        """The given key, else the stored one, else a new one; a stored key is never replaced."""
        stored = self.layout.stored_key(kind)
        if stored and given and given != stored:
            raise CatalogError(f"{self.layout.key_path(kind)} already holds a different {kind} key; "
                               f"a directory's keys are set once, at its first start")
        return stored or given or new_key()

    @property
    def writer_key(self) -> str:
        return self._keys["writer"]

    @property
    def reader_key(self) -> str:
        return self._keys["reader"]

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _provision_keys(self):
        """First start (or lost files): make the keys valid in tiled's database, then store them."""
        missing = {k: v for k, v in self._keys.items() if not self.layout.key_path(k).exists()}
        if not missing and self.layout.auth_db.exists():
            return
        from ._auth import provision

        provision(self.layout.auth_db, self._keys)  # keys already there are skipped
        for kind, key in missing.items():
            write_secret(self.layout.key_path(kind), key + "\n")
        legacy = self.layout.root / "api_key"  # the single all-powerful key of older versions: now void
        if legacy.exists():
            legacy.unlink()
            log.info("removed %s: keys now live in %s", legacy, self.layout.keys)

    def start(self) -> "TiledServer":
        if not port_is_free(self.port):
            raise CatalogError(f"cannot serve the catalogue on port {self.port}: something is already listening there")
        self._provision_keys()
        write_secret(self.layout.config_file, json.dumps(self.layout.server_config(self.public), indent=2))
        # no key reaches the child: tiled checks keys against auth.db; drop a client key we may hold
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
        log_fd = os.open(self.layout.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # out of Ctrl-C's reach: a session of its own, or (idle) a process group in ours
            detach = _own_process_group() if self.idle else {"start_new_session": True}
            self._proc = subprocess.Popen(tiled_command(self.layout, self.port), stdout=log_fd,
                                          stderr=subprocess.STDOUT, env=env, umask=0o077, **detach)
        finally:
            os.close(log_fd)
        try:
            self._wait_ready()
        except BaseException:  # failed or interrupted (SIGTERM, Ctrl-C) while starting: never orphan the child
            self.stop()
            raise
        if self.nice or self.idle:  # after the start-up, which a low priority on a busy host would drag out
            log.info("Tiled server at lower CPU priority: %s",
                     lower_priority(self._proc.pid, self.nice, idle=self.idle))
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CatalogError(
                    f"tiled serve exited with code {self._proc.returncode}; see {self.layout.log_file}:\n"
                    + self._log_tail()
                )
            if self._healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise CatalogError(f"tiled serve did not become ready within {self.startup_timeout:.0f} s; "
                           f"see {self.layout.log_file}")

    def _healthy(self) -> bool:
        """One ``GET /healthz``, with the standard library: polling with httpx.get built an SSL
        context per poll, CPU taken from the starting server on a small machine."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return json.loads(conn.getresponse().read()).get("status") == "ready"
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _log_tail(self, n=20) -> str:
        try:
            return "\n".join(self.layout.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def client(self, **kwargs):
        """A client with the write key (for the services)."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.writer_key, **kwargs)

    def reader_client(self, **kwargs):
        """A client with the read-only key (what an analyst or the viewer gets)."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.reader_key, **kwargs)

    def sink(self, **kwargs):
        """A TiledSink that writes volumes into this catalogue's ``volumes`` directory."""
        from ._writers import TiledSink

        return TiledSink(self.client(**kwargs), volume_dir=self.layout.volumes)

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (for measuring its memory)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0):
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
