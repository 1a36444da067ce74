"""Service principals and keys in tiled's authentication database (tomobluesky/catalog/_auth.py), without a
server: a SQLite file in a temporary directory, checked with tiled's own key lookup and read back with
sqlite3. Written against mutmut's survivors: before these, _auth.py was reached only by the system tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import stat

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from tiled.alembic_utils import get_current_revision
from tiled.authn_database.core import ALL_REVISIONS, REQUIRED_REVISION, lookup_valid_api_key

from tomobluesky.catalog._auth import provision

WRITER = "a1" * 32
READER = "b2" * 32
OTHER_WRITER = "c3" * 32
# written out here, not imported: the constants in _auth.py are what the mutants change
WRITER_SCOPES = ["read:metadata", "read:data", "write:metadata", "write:data", "create:node",
                 "register", "delete:node", "delete:revision"]
READER_SCOPES = ["read:metadata", "read:data"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _rows(db, sql, *args):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _lookup(db, key):
    """What tiled's server does with a key a client sends: (principal type, role names, key scopes)."""
    async def look():
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                found = await lookup_valid_api_key(session, bytes.fromhex(key))
                if found is None:
                    return None
                principal = found.principal
                return (str(principal.type.value if hasattr(principal.type, "value") else principal.type),
                        sorted(r.name for r in principal.roles), list(found.scopes))
        finally:
            await engine.dispose()

    return asyncio.run(look())


def _revision(db):
    async def rev():
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        try:
            return await get_current_revision(engine, ALL_REVISIONS)
        finally:
            await engine.dispose()

    return asyncio.run(rev())


def test_a_new_database_is_private_stamped_and_holds_both_keys(tmp_path, umask_022):
    db = tmp_path / "auth.sqlite"
    provision(db, {"writer": WRITER, "reader": READER})
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    # stamped with tiled's current revision: else the server takes it for a foreign database
    assert _revision(db) == REQUIRED_REVISION
    assert _lookup(db, WRITER) == ("service", ["tomobluesky-writer"], WRITER_SCOPES)
    assert _lookup(db, READER) == ("service", ["tomobluesky-reader"], READER_SCOPES)
    assert _lookup(db, OTHER_WRITER) is None


def test_rows_written_for_each_key(tmp_path, umask_022):
    db = tmp_path / "auth.sqlite"
    provision(db, {"writer": WRITER, "reader": READER})
    keys = _rows(db, "SELECT first_eight, hashed_secret, note, scopes, expiration_time, principal_id FROM api_keys")
    assert len(keys) == 2
    by_first = {k[0]: k for k in keys}
    assert set(by_first) == {WRITER[:8], READER[:8]}
    for key, role, scopes in ((WRITER, "tomobluesky-writer", WRITER_SCOPES),
                              (READER, "tomobluesky-reader", READER_SCOPES)):
        first, hashed, note, key_scopes, expires, principal = by_first[key[:8]]
        assert bytes(hashed) == hashlib.sha256(bytes.fromhex(key)).digest()
        assert note == f"{role} (tomobluesky)"
        assert json.loads(key_scopes) == scopes
        assert expires is None
        (ptype,), = _rows(db, "SELECT type FROM principals WHERE id = ?", principal)
        assert ptype == "service"
        (role_name, description, role_scopes), = _rows(
            db, "SELECT r.name, r.description, r.scopes FROM roles r JOIN principal_role_association a "
                "ON a.role_id = r.id WHERE a.principal_id = ?", principal)
        assert role_name == role and description == "tomobluesky service"
        assert json.loads(role_scopes) == scopes
    # tiled's default roles are there too (initialize_database), and no more than ours beside them
    assert sorted(r for r, in _rows(db, "SELECT name FROM roles")) == [
        "admin", "tomobluesky-reader", "tomobluesky-writer", "user"]
    assert len(_rows(db, "SELECT id FROM principals")) == 2


def test_keys_already_there_are_left_alone(tmp_path, umask_022):
    db = tmp_path / "auth.sqlite"
    provision(db, {"writer": WRITER, "reader": READER})
    before = _rows(db, "SELECT first_eight, principal_id, time_created FROM api_keys ORDER BY first_eight")
    provision(db, {"writer": WRITER, "reader": READER})
    provision(db, {"reader": READER})
    assert _rows(db, "SELECT first_eight, principal_id, time_created FROM api_keys ORDER BY first_eight") == before
    assert len(_rows(db, "SELECT id FROM principals")) == 2
    assert _lookup(db, WRITER) == ("service", ["tomobluesky-writer"], WRITER_SCOPES)


def test_a_new_key_for_an_existing_role_reuses_the_role(tmp_path, umask_022):
    db = tmp_path / "auth.sqlite"
    provision(db, {"writer": WRITER})
    assert _lookup(db, READER) is None
    provision(db, {"writer": OTHER_WRITER, "reader": READER})
    assert _revision(db) == REQUIRED_REVISION
    for key in (WRITER, OTHER_WRITER):
        assert _lookup(db, key) == ("service", ["tomobluesky-writer"], WRITER_SCOPES)
    assert _lookup(db, READER) == ("service", ["tomobluesky-reader"], READER_SCOPES)
    assert len(_rows(db, "SELECT id FROM roles WHERE name = 'tomobluesky-writer'")) == 1
    # one service principal per key
    assert len(_rows(db, "SELECT id FROM principals")) == 3


def test_only_the_keys_asked_for_are_made(tmp_path, umask_022):
    db = tmp_path / "auth.sqlite"
    provision(db, {"reader": READER})
    assert _lookup(db, READER) == ("service", ["tomobluesky-reader"], READER_SCOPES)
    assert _rows(db, "SELECT name FROM roles WHERE name = 'tomobluesky-writer'") == []
    assert [k for k, in _rows(db, "SELECT first_eight FROM api_keys")] == [READER[:8]]


def test_an_existing_file_keeps_its_mode(tmp_path, umask_022):
    """An empty file already there (the operator made it) is initialised, not replaced."""
    db = tmp_path / "auth.sqlite"
    db.touch()
    os.chmod(db, 0o640)
    provision(db, {"writer": WRITER})
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
    assert _lookup(db, WRITER) == ("service", ["tomobluesky-writer"], WRITER_SCOPES)


def test_an_unknown_kind_is_refused(tmp_path, umask_022):
    with pytest.raises(KeyError):
        provision(tmp_path / "auth.sqlite", {"admin": WRITER})
