"""A private PostgreSQL cluster for the stack's catalogue (Debian's ``postgresql`` package).

The cluster lives in ``<dir>/data`` (made once with ``initdb``) and listens on a
unix socket in ``<dir>/socket`` only (TCP only when ``listen`` asks for it).
Local connections use *peer* authentication: the kernel tells the server which
OS user connects, so there is no password anywhere, in a file or on a command
line. Tiled connects as the OS user that runs the stack, to a database that user
owns.

PostgreSQL refuses to run as root; a stack started by root runs the server as
``run_as`` (Debian's ``postgres`` account), which owns the cluster's directories
and must be able to reach them (every directory above them must be searchable).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class PostgresError(RuntimeError):
    """The PostgreSQL server could not be found, initialised or reached."""


def find_bin_dir(configured: Path | None = None) -> Path:
    """The directory holding initdb, postgres, psql and pg_isready."""
    if configured is not None:
        candidates = [Path(configured)]
    else:
        debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0])
        on_path = shutil.which("initdb")
        candidates = debian[::-1] + ([Path(on_path).resolve().parent] if on_path else [])
    for d in candidates:
        if all((d / tool).exists() for tool in ("initdb", "postgres", "psql", "pg_isready")):
            return d
    raise PostgresError("no PostgreSQL server found (initdb, postgres, psql, pg_isready): install Debian's "
                        "`postgresql` package (apt-get install postgresql) or set postgres.bin_dir")


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@dataclass
class PostgresCluster:
    """Paths, owner and commands of one cluster; nothing runs until a method is called."""

    directory: Path
    port: int
    bin_dir: Path
    run_as: str = "postgres"
    listen: str = ""

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    @property
    def socket_file(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"

    @property
    def server_user(self) -> str:
        """The OS user the server runs as: ourselves, or ``run_as`` when we are root."""
        return self.run_as if os.geteuid() == 0 else current_user()

    @property
    def client_role(self) -> str:
        """The database role Tiled connects as (peer authentication: the OS user's name)."""
        return current_user()

    def server_command(self) -> list[str]:
        """The server in the foreground, as a supervisor runs it (settings in postgresql.conf)."""
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]

    def sqlalchemy_uri(self, database: str) -> str:
        """Tiled's catalogue URI: asyncpg over the unix socket, no password."""
        return f"postgresql+asyncpg://{self.client_role}@/{database}?host={self.socket_dir}&port={self.port}"

    def libpq_uri(self, database: str) -> str:
        """A libpq URI (Tiled's tabular storage, through ADBC) over the unix socket."""
        return f"postgresql:///{database}?host={self.socket_dir}&port={self.port}&user={self.client_role}"

    # preparation ------------------------------------------------------------------------------
    def _run(self, cmd: list[str], what: str, **kwargs) -> str:
        user = self.server_user if os.geteuid() == 0 else None
        proc = subprocess.run(cmd, capture_output=True, text=True, user=user, cwd="/", **kwargs)
        if proc.returncode != 0:
            raise PostgresError(f"{what} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
        return proc.stdout

    def _check_reachable(self) -> None:
        """As root, the server's user must be able to walk down to its directory."""
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam(self.run_as)
        for parent in [*reversed(self.directory.parents), self.directory]:
            mode = parent.stat()
            searchable = mode.st_mode & 0o001 or (mode.st_uid == account.pw_uid and mode.st_mode & 0o100)
            if not searchable:
                raise PostgresError(
                    f"PostgreSQL runs as {self.run_as!r} (it refuses root) and cannot reach {self.directory}: "
                    f"{parent} is not searchable by that user; give it o+x or choose paths.root elsewhere")

    def initialise(self) -> bool:
        """initdb once (returns True when it made the cluster); rewrite postgresql.conf's additions."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        account = pwd.getpwnam(self.server_user)
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, account.pw_uid, account.pw_gid)
            d.chmod(0o700)
        made = False
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.server_user,
                       "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--no-instructions"], "initdb")
            made = True
        conf = (f"# written by tomobluesky stack at every start\n"
                f"port = {self.port}\n"
                f"listen_addresses = '{self.listen}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"unix_socket_permissions = 0700\n"  # only the server's user (and root) connect
                f"logging_collector = off\n")
        target = self.data_dir / "tomobluesky.conf"
        target.write_text(conf)
        os.chown(target, account.pw_uid, account.pw_gid)
        main_conf = self.data_dir / "postgresql.conf"
        if "include_if_exists = 'tomobluesky.conf'" not in main_conf.read_text():
            with open(main_conf, "a") as f:
                f.write("\ninclude_if_exists = 'tomobluesky.conf'\n")
        return made

    def is_ready(self) -> bool:
        proc = subprocess.run([str(self.bin_dir / "pg_isready"), "-q", "-h", str(self.socket_dir),
                               "-p", str(self.port), "-d", "postgres", "-U", self.server_user], capture_output=True)
        return proc.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run([str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                          "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.server_user,
                          "-d", database, "-c", sql], f"psql ({sql.split()[0]})")

    def ensure_database(self, *names: str) -> None:
        """The client's role (as root: a login role named after root) and each database, owned by it."""
        role = self.client_role
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip():
            self.psql(f'CREATE ROLE "{role}" LOGIN')
        for name in names:
            if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
                self.psql(f'CREATE DATABASE "{name}" OWNER "{role}"')
