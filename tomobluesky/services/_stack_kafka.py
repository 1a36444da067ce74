"""The stack's Kafka broker: the same single KRaft node as ``tomobluesky kafka start``
(the same jars, log4j2 configuration and readiness probe from
:mod:`tomobluesky.services.kafka`), but run in the foreground under supervisord
instead of detached, so that it is restarted when it dies."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from .kafka import LOG4J2_CONFIG, KafkaServiceError, fetch_jars, java_executable


def _properties(directory: Path, port: int, controller_port: int) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(directory / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # the stack's workers join one after another: rebalance at once, not after 3 s
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }


def _java_options(directory: Path, heap: str) -> list[str]:
    return [f"-Xmx{heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={directory / 'logs'}"]


def prepare_broker(directory: Path, port: int, controller_port: int, *, heap: str = "512m",
                   version: str | None = None) -> list[str]:
    """Fetch the jars (once), write the broker's configuration, format its storage (once);
    return the command that runs the broker in the foreground."""
    lib = fetch_jars(version)
    java = java_executable()
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    props = directory / "server.properties"
    lines = ["# written by `tomobluesky stack up` at every start"]
    lines += [f"{k}={v}" for k, v in _properties(directory, port, controller_port).items()]
    props.write_text("\n".join(lines) + "\n")
    (directory / "log4j2.properties").write_text(LOG4J2_CONFIG)
    classpath = str(lib / "*")
    if not (directory / "data" / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the storage tool would read a leading '-' as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [java, "-Xmx256m", *_java_options(directory, "256m")[5:], "-cp", classpath,
               "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=directory)
        if proc.returncode != 0:
            raise KafkaServiceError(f"formatting the KRaft storage in {directory / 'data'} failed:\n"
                                    f"{(proc.stdout + proc.stderr)[-3000:]}")
    return [java, *_java_options(directory, heap), "-cp", classpath, "kafka.Kafka", str(props)]
