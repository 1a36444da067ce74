"""Tiled API keys as the clients see them: how strong a key must be, where a
command finds one, and how a key file is written.

A key never travels on a command line: ``ps`` and ``/proc/<pid>/cmdline`` show
every argument to every local user. Clients take it from the environment
variable ``TOMOBLUESKY_TILED_API_KEY`` or from a file named by
``--api-key-file``; the servers the package starts keep theirs in
``DATA_DIR/keys/`` (mode 0600).
"""

from __future__ import annotations

import argparse
import os
import secrets
import string
from pathlib import Path

KEY_ENV = "TOMOBLUESKY_TILED_API_KEY"
MIN_KEY_LENGTH = 32
_HEX = frozenset(string.hexdigits)


class KeyRefused(ValueError):
    """A Tiled API key that is too weak, malformed or missing."""


def new_key() -> str:
    """A fresh key: 32 random bytes as 64 hexadecimal digits."""
    return secrets.token_hex(32)


def check_key(key: str, origin: str = "the key given") -> str:
    """``key`` without surrounding whitespace, or KeyRefused.

    Tiled's multi-user mode reads a key as hexadecimal bytes, so a key is an even
    number of hex digits; 32 of them (128 bits) is the floor for guessing."""
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH or len(key) % 2 or not _HEX.issuperset(key):
        raise KeyRefused(f"refusing {origin}: a Tiled API key must be an even number of at least "
                         f"{MIN_KEY_LENGTH} hexadecimal digits (make one with `openssl rand -hex 32`)")
    return key


def read_key_file(path: str | Path) -> str:
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as err:
        raise KeyRefused(f"cannot read the Tiled API key file {path}: {err.strerror}") from None
    return check_key(text, f"the key in {path}")


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older tmp file may have had looser bits
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def client_key(key_file: str | Path | None = None, stored: Path | None = None) -> str | None:
    """The key a client command uses: ``--api-key-file``, else $TOMOBLUESKY_TILED_API_KEY,
    else the ``stored`` key file when it exists, else None (anonymous)."""
    if key_file:
        return read_key_file(key_file)
    if os.environ.get(KEY_ENV):
        return check_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    if stored is not None and stored.exists():
        return read_key_file(stored)
    return None


CLIENT_KEY_HINT = f"set {KEY_ENV} or give --api-key-file PATH"


class _RefuseKeyArgument(argparse.Action):
    """``--api-key VALUE`` is rejected outright (without echoing VALUE): by the time it is
    parsed the key has already been visible in the process list."""

    def __init__(self, *args, hint: str = CLIENT_KEY_HINT, **kwargs):
        self.hint = hint
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a key on the command line is visible to every local "
                     f"user; {self.hint}")


def refuse_key_argument(parser: argparse.ArgumentParser, hint: str = CLIENT_KEY_HINT) -> None:
    """A hidden ``--api-key`` that explains why it is refused and what to do instead. Without it
    argparse would take ``--api-key KEY`` for an abbreviation of ``--api-key-file``, or echo KEY
    back as an unrecognized argument."""
    parser.add_argument("--api-key", action=_RefuseKeyArgument, hint=hint, help=argparse.SUPPRESS)


def add_key_file_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--api-key-file PATH``, the only way a key is named on a command line."""
    parser.add_argument("--api-key-file", metavar="PATH", help=help)
    refuse_key_argument(parser)
