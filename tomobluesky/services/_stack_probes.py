"""Health probes of the stack's services: each asks the service itself, not the process table."""

from __future__ import annotations

import http.client
import json
import logging
import socket


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body) of a GET on 127.0.0.1:port, or None when nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def tiled_ready(port: int) -> tuple[bool, str]:
    got = http_get(port, "/healthz")
    if got is None:
        return False, "no answer"
    try:
        ready = got[0] == 200 and json.loads(got[1]).get("status") == "ready"
    except ValueError:
        ready = False
    return ready, "/healthz ready" if ready else f"/healthz answered {got[0]}"


def http_ok(port: int, path: str = "/") -> tuple[bool, str]:
    got = http_get(port, path)
    if got is None:
        return False, "no answer"
    return got[0] == 200, f"GET {path} {got[0]}"


def dask_workers(dashboard_port: int) -> int | None:
    """How many workers the scheduler has, from its dashboard's JSON; None if it did not answer."""
    got = http_get(dashboard_port, "/json/counts.json")
    if got is None or got[0] != 200:
        return None
    try:
        return int(json.loads(got[1])["workers"])
    except (ValueError, KeyError, TypeError):
        return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def group_members(bootstrap: str, group: str, timeout: float = 3.0) -> int | None:
    """Members of a Kafka consumer group (the workers that joined it), or None if the broker did not say."""
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("tomobluesky.stack.probe")
    quiet.setLevel(logging.CRITICAL + 1)  # an unreachable broker is an answer here, not a log line
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": quiet})
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
    except Exception:  # KafkaException: no broker or no coordinator yet
        return None
    return len(described.members)
