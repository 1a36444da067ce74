"""Live reconstruction worker: documents in, volumes into Tiled.

Without Kafka it replays recorded runs (JSON lines of {"name", "doc"}, the
format TiledWriter's backup and ``tomobluesky`` journals use):

    TOMOBLUESKY_TILED_API_KEY=... python callbacks/live_recon.py --tiled-uri http://127.0.0.1:8000 runs/*.jsonl
    python callbacks/live_recon.py --tiled-uri http://127.0.0.1:8000 --api-key-file DATA_DIR/keys/writer runs/*.jsonl

With Kafka (``--kafka BOOTSTRAP``) it joins the reconstruction consumer group
and follows the beamline's document topic; see ``--help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tomobluesky.config import Settings
from tomobluesky.keys import KeyRefused, add_key_file_option, client_key
from tomobluesky.live import live_reconstruction_router


def read_jsonl(path):
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    item = json.loads(line)
                    yield item["name"], item["doc"]
                except (ValueError, KeyError) as err:
                    raise SystemExit(f"{path}:{lineno}: not a {{'name', 'doc'}} JSON line ({err})")


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", help="recorded runs (JSON lines) to reconstruct, in order")
    p.add_argument("--tiled-uri", default=settings.tiled_uri, help="Tiled server to write to (env TOMOBLUESKY_TILED_URI)")
    add_key_file_option(p, "file holding the catalogue's write key (default: $TOMOBLUESKY_TILED_API_KEY)")
    p.add_argument("--kafka", default=settings.kafka_bootstrap, help="Kafka bootstrap servers; follow the live topic")
    p.add_argument("--beamline", default=settings.beamline, help="beamline name, for the topic (default: %(default)s)")
    p.add_argument("--until-idle", action="store_true", help="with --kafka: stop when no message came for a while")
    return p


def main(argv=None) -> int:
    settings = Settings()
    args = build_parser(settings).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.tiled_uri:
        print("live_recon: give --tiled-uri (or set TOMOBLUESKY_TILED_URI)", file=sys.stderr)
        return 2
    from tiled.client import from_uri

    from tomobluesky.catalog import TiledSink

    try:
        key = client_key(args.api_key_file)
    except KeyRefused as err:
        print(f"live_recon: {err}", file=sys.stderr)
        return 2
    if key is None:
        print("live_recon: no Tiled write key: set TOMOBLUESKY_TILED_API_KEY or give --api-key-file PATH",
              file=sys.stderr)
        return 2
    client = from_uri(args.tiled_uri, api_key=key)
    if args.kafka:
        from tomobluesky.transport import WorkerPolicy
        from tomobluesky.workers import run_reconstruction_worker

        config = settings.kafka_config().replace(bootstrap=args.kafka, beamline=args.beamline)
        run_reconstruction_worker(config, client, settings=settings.recon, volume_dir=settings.volumes,
                                  memory_budget=settings.memory_budget_gb * 1e9,
                                  policy=WorkerPolicy(until_idle=30.0 if args.until_idle else None,
                                                      on_error="deadletter"))
        return 0
    router = live_reconstruction_router(TiledSink(client, volume_dir=settings.volumes), settings.recon,
                                        memory_budget=settings.memory_budget_gb * 1e9)
    for path in args.files:
        for name, doc in read_jsonl(path):
            router(name, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
