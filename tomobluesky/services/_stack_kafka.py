"""The stack's Kafka broker: the same single KRaft node as ``tomobluesky kafka start``
(the same jars, log4j2 configuration and readiness probe from
:mod:`tomobluesky.services.kafka`), but run in the foreground under supervisord
instead of detached, so that it is restarted when it dies."""

from __future__ import annotations

from pathlib import Path

from .kafka import fetch_jars, java_executable
from .kafka._broker import format_storage, java_options, kraft_properties, write_configs


def prepare_broker(directory: Path, port: int, controller_port: int, *, heap: str = "512m",
                   version: str | None = None) -> list[str]:
    """Fetch the jars (once), write the broker's configuration, format its storage (once);
    return the command that runs the broker in the foreground."""
    lib = fetch_jars(version)
    java = java_executable()
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    props = write_configs(directory, kraft_properties(port, controller_port, directory / "data"),
                          "written by `tomobluesky stack up` at every start")
    classpath = str(lib / "*")
    if not (directory / "data" / "meta.properties").exists():
        format_storage(java, classpath, directory)
    return [java, *java_options(directory, heap), "-cp", classpath, "kafka.Kafka", str(props)]
