"""``tomobluesky config`` (the settings in effect) and ``tomobluesky worker`` (the Kafka workers)."""

from __future__ import annotations

import argparse

CONFIG_HELP = """\
Print the settings in effect, as YAML, with where they come from in order of
precedence: command-line options, TOMOBLUESKY_* environment variables (nested with
__, e.g. TOMOBLUESKY_RECON__ALGORITHM=fbp), the YAML file named by
TOMOBLUESKY_CONFIG (the same keys, nested as sections), defaults. The kafka
section is shown as the clients use it: the site's kafka.yml (the NSLS-II
/etc/bluesky/kafka.yml, $BLUESKY_KAFKA_CONFIG_PATH) with the section and the
TOMOBLUESKY_KAFKA_* variables over it. Secrets (the Tiled key, SASL passwords)
are masked. The output is itself a valid configuration file: a masked secret
reads back as not given, so it comes from its file or variable again.

examples:
  tomobluesky config > tomobluesky.yml          # start a configuration file
  TOMOBLUESKY_CONFIG=tomobluesky.yml tomobluesky demo
"""

WORKER_HELP = """\
Run a worker that follows the beamline's document topic on Kafka: 'reconstruction'
reconstructs each tomography scan into Tiled, 'catalog' writes the raw runs into
Tiled. Workers of one kind share a consumer group and split the scans. The same
settings as every other command apply (TOMOBLUESKY_CONFIG, TOMOBLUESKY_*); the
Tiled write key comes from --api-key-file or $TOMOBLUESKY_TILED_API_KEY, never
from the command line. `tomobluesky worker reconstruction --help` lists the options.

examples:
  tomobluesky worker reconstruction --bootstrap 127.0.0.1:9092 \\
      --tiled-uri http://127.0.0.1:8000 --api-key-file DATA_DIR/keys/writer
  tomobluesky worker catalog --tiled-uri http://127.0.0.1:8000 --api-key-file DATA_DIR/keys/writer
"""

SECRETS = ("tiled_api_key",)


def add_settings_commands(sub):
    p = sub.add_parser("config", help="print the settings in effect (YAML), secrets masked",
                       description=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_cmd_config)
    p = sub.add_parser("worker", help="run a Kafka worker: 'reconstruction' or 'catalog'",
                       description=WORKER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("worker_args", nargs=argparse.REMAINDER, help="reconstruction|catalog and its options")
    p.set_defaults(func=_cmd_worker, parser=p)


def effective(settings) -> dict:
    """The settings as plain data (paths as strings), the Kafka section resolved against the site's
    file and the environment (an error there is raised, naming the file), secrets masked."""
    from .config import SECRET_MARK, KafkaSection

    data = settings.model_dump(mode="json")
    for key in SECRETS:
        if data.get(key):
            data[key] = SECRET_MARK
    data["kafka"] = KafkaSection.of(settings.kafka_config()).model_dump(mode="json", exclude_none=True)
    return data


def _cmd_config(args, settings) -> int:
    import yaml

    print(yaml.safe_dump(effective(settings), sort_keys=True), end="")
    return 0


def _cmd_worker(args, settings) -> int:
    from .workers import main

    if not args.worker_args:
        args.parser.error("which worker: reconstruction or catalog")
    return main(args.worker_args, prog="tomobluesky worker")
