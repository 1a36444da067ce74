#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft) for tomobluesky, from Maven Central jars.
#   deploy/kafka/kafka.sh fetch            download the jars once (needs mvn, Java 17+)
#   deploy/kafka/kafka.sh start [--port P] start detached; prints the bootstrap address
#   deploy/kafka/kafka.sh status           running? where?
#   deploy/kafka/kafka.sh stop             SIGTERM, clean shutdown
# Same as `tomobluesky kafka ...`. PYTHON picks the interpreter (default: the repo's .venv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
case "${1:-}" in
  start|stop|status|fetch) exec "$PYTHON" -m tomobluesky.cli_kafka "$@" ;;
  *) echo "usage: $0 start|stop|status|fetch [options]" >&2; exit 2 ;;
esac
