"""Mint the two tomobluesky keys on a production Tiled server (config.yml here),
through tiled's own admin API, and write them to files readable by their owner only.

    TILED_ADMIN_PASSWORD=... python deploy/tiled/make_service_keys.py http://127.0.0.1:8000 /etc/tomobluesky/keys

    OUT/writer   for the services: the RunEngine's process, the catalogue and reconstruction workers
    OUT/reader   for analysts and the viewer: read metadata and data, nothing else

The admin password comes from $TILED_ADMIN_PASSWORD or --password-file, never
the command line. Existing key files are never overwritten; revoke a key with
`tiled`'s admin API (DELETE /api/v1/auth/apikey?first_eight=...) before making
a new one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tomobluesky.catalog._auth import READER_SCOPES, WRITER_SCOPES
from tomobluesky.keys import write_secret

# tiled's default roles: only "admin" has the "register" scope the writer needs (detector files,
# Zarr volumes); the key's own scopes keep it from everything else the role allows.
PRINCIPALS = {"writer": ("admin", WRITER_SCOPES), "reader": ("user", READER_SCOPES)}


def admin_context(uri: str, password: str):
    from tiled.client.context import Context, password_grant

    ctx = Context(uri.rstrip("/") + "/api/v1")
    provider = ctx.server_info.authentication.providers[0]
    tokens = password_grant(ctx.http_client, provider.links["auth_endpoint"], provider.provider, "admin", password)
    ctx.configure_auth(tokens, remember_me=False)
    return ctx


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", help="the Tiled server, e.g. http://127.0.0.1:8000")
    p.add_argument("out", type=Path, help="directory for the key files (created mode 0700)")
    p.add_argument("--password-file", type=Path, help="file holding the admin password "
                   "(default: $TILED_ADMIN_PASSWORD)")
    args = p.parse_args(argv)
    password = args.password_file.read_text().strip() if args.password_file else os.environ.get("TILED_ADMIN_PASSWORD")
    if not password:
        p.error("no admin password: set TILED_ADMIN_PASSWORD or give --password-file")
    existing = [str(args.out / kind) for kind in PRINCIPALS if (args.out / kind).exists()]
    if existing:
        p.error(f"refusing to overwrite {', '.join(existing)}")
    args.out.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctx = admin_context(args.uri, password)
    for kind, (role, scopes) in PRINCIPALS.items():
        principal = ctx.admin.create_service_principal(role=role)
        key = ctx.admin.create_api_key(principal["uuid"], scopes=scopes, note=f"tomobluesky {kind}")
        write_secret(args.out / kind, key["secret"] + "\n")
        print(f"{kind}: principal {principal['uuid']}, key {key['first_eight']}… in {args.out / kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
