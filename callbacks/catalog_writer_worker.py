"""Catalogue writer behind Kafka: raw runs reach Tiled through the broker,
not from the RunEngine's process (see ``--help``).

    python callbacks/catalog_writer_worker.py --bootstrap 127.0.0.1:9092 \
        --tiled-uri http://127.0.0.1:8000 --api-key-file /path/to/catalog/keys/writer

The key may come from $TOMOBLUESKY_TILED_API_KEY instead; never from the
command line, which every local user can read.
"""

import sys

from tomobluesky.workers import main

if __name__ == "__main__":
    sys.exit(main(["catalog", *sys.argv[1:]]))
