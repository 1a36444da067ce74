"""``tomobluesky kafka start|stop|status|fetch``: a local single-node broker.

The lead's CLI calls :func:`add_kafka_commands` on its subparsers; until then
``python -m tomobluesky.cli_kafka start`` does the same. ``start`` returns once
the broker answers and leaves it running (its own session); the pid, ports and
storage are recorded in ``STATE_DIR/broker.json`` where ``stop`` and ``status``
find them. STATE_DIR defaults to ~/.local/state/tomobluesky/kafka
($TOMOBLUESKY_KAFKA_STATE overrides it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_kafka_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``kafka start|stop|status|fetch`` to an argparse ``subparsers`` object.

    Each leaf sets ``func(args, settings=None) -> int``."""
    from .limits import PORTS, bounded
    from .services.kafka import KAFKA_VERSION, default_cache_root, default_state_dir

    p = subparsers.add_parser("kafka", help="run a local Apache Kafka broker (KRaft, from Maven Central jars)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")

    def common(q):
        q.add_argument("--state-dir", default=str(default_state_dir()),
                       help="broker storage, logs and broker.json (default: %(default)s)")
        q.add_argument("--json", action="store_true", help="print one JSON object")

    q = sub.add_parser("fetch", help="download the broker's jars once (needs mvn and Java 17+)")
    q.add_argument("--version", default=None, help=f"kafka_2.13 version (default: {KAFKA_VERSION}, 4.3.x fallback)")
    q.add_argument("--cache", default=str(default_cache_root()), help="jar cache (default: %(default)s)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_cmd_fetch)

    q = sub.add_parser("start", help="start the broker, detached; prints its bootstrap address")
    common(q)
    q.add_argument("--port", type=bounded(int, *PORTS), default=None, help="client port (default: the last one, else a free one)")
    q.add_argument("--version", default=None, help=f"kafka_2.13 version (default: {KAFKA_VERSION})")
    q.add_argument("--heap", default="512m", help="JVM heap (default: %(default)s)")
    q.set_defaults(func=_cmd_start)

    q = sub.add_parser("stop", help="stop the broker (SIGTERM, clean shutdown)")
    common(q)
    q.set_defaults(func=_cmd_stop)

    q = sub.add_parser("status", help="is the broker running, and where (exit 0 when ready, 3 when not)")
    common(q)
    q.set_defaults(func=_cmd_status)
    return p


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


def _cmd_fetch(args, settings=None) -> int:
    from .services.kafka import KafkaServiceError, fetch_jars

    try:
        lib = fetch_jars(args.version, args.cache)
    except KafkaServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    jars = sorted(lib.glob("*.jar"))
    _emit(args, {"version": lib.parent.name, "lib": str(lib), "jars": len(jars)},
          f"Kafka {lib.parent.name}: {len(jars)} jars in {lib}")
    return 0


def _cmd_start(args, settings=None) -> int:
    from .services.kafka import KafkaBroker, KafkaServiceError, read_state

    state = read_state(args.state_dir)
    try:
        if state is not None:
            running = KafkaBroker.attach(args.state_dir)
            if running.is_running():
                _emit(args, {"bootstrap": running.bootstrap, "pid": running.pid, "already_running": True},
                      f"Kafka already running at {running.bootstrap} (pid {running.pid})")
                return 0
        broker = KafkaBroker(args.state_dir, port=args.port, version=args.version, heap=args.heap)
        broker.start()
    except KafkaServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _emit(args, {"bootstrap": broker.bootstrap, "pid": broker.pid, "version": broker.version,
                 "state_dir": str(broker.directory), "log": str(broker.log_file)},
          f"Kafka {broker.version} running at {broker.bootstrap} (pid {broker.pid}); logs in {broker.log_file}\n"
          f"export TOMOBLUESKY_KAFKA_BOOTSTRAP={broker.bootstrap}")
    return 0


def _cmd_stop(args, settings=None) -> int:
    from .services.kafka import KafkaBroker, KafkaServiceError, read_state

    if read_state(args.state_dir) is None:
        _emit(args, {"stopped": False, "reason": "no broker recorded"}, f"no broker recorded in {args.state_dir}")
        return 0
    try:
        broker = KafkaBroker.attach(args.state_dir)
        was = broker.is_running()
        broker.stop()
    except KafkaServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _emit(args, {"stopped": was, "bootstrap": broker.bootstrap},
          f"Kafka at {broker.bootstrap} stopped" if was else "Kafka was not running")
    return 0


def _cmd_status(args, settings=None) -> int:
    from .services.kafka import KafkaBroker, read_state

    state = read_state(args.state_dir)
    if state is None:
        _emit(args, {"running": False, "ready": False}, f"no broker recorded in {args.state_dir}")
        return 3
    broker = KafkaBroker.attach(args.state_dir)
    running = broker.is_running()
    ready = running and broker.is_ready()
    _emit(args, {"running": running, "ready": ready, "bootstrap": broker.bootstrap, "pid": broker.pid,
                 "version": state.version, "state_dir": state.directory},
          f"Kafka {state.version} at {broker.bootstrap}: " + ("ready" if ready else "running, not answering"
                                                              if running else "stopped"))
    return 0 if ready else 3


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="tomobluesky")
    add_kafka_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "kafka" and not argv[0].startswith("-"):
        argv = ["kafka", *argv]  # `python -m tomobluesky.cli_kafka start` == `tomobluesky kafka start`
    args = parser.parse_args(argv)
    return args.func(args, None)


if __name__ == "__main__":
    sys.exit(main())
