"""Start, wait for and stop a real ``tiled serve catalog`` process.

One data directory holds everything the catalogue needs and outlives the
process, so ``tomobluesky serve`` can serve a demo's results again:

    DIR/catalog.db     SQLite catalogue (nodes and metadata)
    DIR/tabular.db     SQLite store for event columns (TiledWriter appends rows)
    DIR/arrays/        writable array storage (previews, uploaded arrays)
    DIR/volumes/       multiscale Zarr stores of reconstructions; served read-only
    DIR/detector/      detector HDF5 files; served read-only to clients
    DIR/backup/        JSON-lines copies of runs Tiled could not take
    DIR/api_key        the key that allows writes (mode 0600)
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


class CatalogError(RuntimeError):
    """The Tiled server could not be started or reached."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class CatalogLayout:
    """Paths inside a catalogue data directory."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).expanduser().resolve()
        self.catalog_db = self.root / "catalog.db"
        self.tabular_uri = f"sqlite:///{self.root / 'tabular.db'}"
        self.arrays = self.root / "arrays"
        self.volumes = self.root / "volumes"
        self.detector = self.root / "detector"
        self.backup = self.root / "backup"
        self.key_file = self.root / "api_key"
        self.log_file = self.root / "tiled-server.log"

    def create(self) -> "CatalogLayout":
        for d in (self.root, self.arrays, self.volumes, self.detector, self.backup):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def api_key(self, key: str | None = None) -> str:
        """The catalogue's write key: ``key`` if given (and remembered), else the stored one, else a new one."""
        if key is None and self.key_file.exists():
            return self.key_file.read_text().strip()
        key = key or secrets.token_hex(16)
        if not key.isalnum():
            raise CatalogError("a Tiled API key may contain only letters and digits")
        self.key_file.write_text(key)
        self.key_file.chmod(0o600)
        return key


def _tiled_executable() -> str:
    exe = Path(sys.executable).with_name("tiled")
    return str(exe) if exe.exists() else (shutil.which("tiled") or "tiled")


def tiled_command(layout: CatalogLayout, port: int, api_key: str, *, host="127.0.0.1", public=False):
    cmd = [
        _tiled_executable(), "serve", "catalog", str(layout.catalog_db), "--init",
        "-w", str(layout.arrays), "-w", layout.tabular_uri, "-r", str(layout.detector),
        "-r", str(layout.volumes),
        "--api-key", api_key, "--host", host, "--port", str(port),
    ]
    return cmd + (["--public"] if public else [])


class TiledServer:
    """A ``tiled serve`` child process over one data directory.

    >>> with TiledServer("~/tomo-catalog") as server:
    ...     client = server.client()
    """

    def __init__(self, data_dir: str | Path, *, port: int | None = None, api_key: str | None = None,
                 public: bool = False, startup_timeout: float = 60.0):
        self.layout = CatalogLayout(data_dir).create()
        self.api_key = self.layout.api_key(api_key)
        self.port = port or free_port()
        self.public = public
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TiledServer":
        if not port_is_free(self.port):
            raise CatalogError(f"cannot serve the catalogue on port {self.port}: something is already listening there")
        cmd = tiled_command(self.layout, self.port, self.api_key, public=self.public)
        log = open(self.layout.log_file, "ab")
        env = dict(os.environ, TILED_SERVER_SECRET_KEYS=self.api_key)
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CatalogError(
                    f"tiled serve exited with code {self._proc.returncode}; see {self.layout.log_file}:\n"
                    + self._log_tail()
                )
            try:
                if httpx.get(f"{self.uri}/healthz", timeout=1).json().get("status") == "ready":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise CatalogError(f"tiled serve did not become ready within {self.startup_timeout:.0f} s; "
                           f"see {self.layout.log_file}")

    def _log_tail(self, n=20) -> str:
        try:
            return "\n".join(self.layout.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def client(self, **kwargs):
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key, **kwargs)

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
