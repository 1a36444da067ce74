"""Service principals and scoped API keys in tiled's own authentication database.

Tiled checks a key by hashing it and looking the hash up in its authentication
database; the key's scopes, intersected with its principal's role, decide what
the request may do. Tiled creates keys only through a logged-in admin, which
would need an admin password on the server. The catalogue needs no human login
at all, so the two service principals and their keys are written here, with
tiled's own tables and functions, before the server starts: the server then has
no admin account, and holds no secret but the keys' hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

# What the services need: TiledWriter creates nodes, appends event rows and registers the
# detector's HDF5 files; TiledSink registers Zarr volumes and replaces partial ones;
# catalog_router deletes a partial raw run before rewriting it.
WRITER_SCOPES = ["read:metadata", "read:data", "write:metadata", "write:data", "create:node",
                 "register", "delete:node", "delete:revision"]
READER_SCOPES = ["read:metadata", "read:data"]
ROLES = {"writer": ("tomobluesky-writer", WRITER_SCOPES), "reader": ("tomobluesky-reader", READER_SCOPES)}


def provision(auth_db: Path, keys: dict[str, str]) -> None:
    """Make each key of ``keys`` ({"writer": key, "reader": key}) valid in the SQLite database
    ``auth_db``, creating the database (mode 0600) if needed. Keys already there are left alone."""
    if not auth_db.exists():
        os.close(os.open(auth_db, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's journals copy this mode
    uri = f"sqlite+aiosqlite:///{auth_db}"
    if asyncio.run(_provision(uri, keys)):
        from tiled.alembic_utils import stamp_head
        from tiled.authn_database.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH

        stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)  # else tiled takes it for a foreign database


async def _provision(uri: str, keys: dict[str, str]) -> bool:
    """Returns True when the database was new (so it still needs its schema revision stamped)."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from tiled.alembic_utils import UninitializedDatabase, check_database
    from tiled.authn_database.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database

    engine = create_async_engine(uri)
    try:
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
            new = False
        except UninitializedDatabase:
            await initialize_database(engine)
            new = True
        async with AsyncSession(engine, expire_on_commit=False) as db:
            for kind, key in keys.items():
                await _grant(db, *ROLES[kind], key)
        return new
    finally:
        await engine.dispose()


async def _grant(db, role_name: str, scopes: list[str], key: str) -> None:
    from sqlalchemy import select
    from tiled.authn_database import orm
    from tiled.authn_database.core import create_service

    secret = bytes.fromhex(key)
    hashed = hashlib.sha256(secret).digest()
    if (await db.execute(select(orm.APIKey).filter(orm.APIKey.hashed_secret == hashed))).scalar() is not None:
        return
    role = (await db.execute(select(orm.Role).filter(orm.Role.name == role_name))).scalar()
    if role is None:
        # a role of exactly these scopes, so even an "inherit" key of this principal can do no more
        db.add(orm.Role(name=role_name, description="tomobluesky service", scopes=scopes))
        await db.commit()
    principal = await create_service(db, role_name)
    db.add(orm.APIKey(first_eight=secret.hex()[:8], hashed_secret=hashed, principal_id=principal.id,
                      scopes=scopes, note=f"{role_name} (tomobluesky)"))
    await db.commit()
