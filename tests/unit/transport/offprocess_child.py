"""Callbacks that OffProcess tests build in the child process (importable by name there, unlike a test module)."""

from __future__ import annotations

import json
import os
import time

from tomobluesky.transport._offprocess import child_backlog, report


def recorder(path: str, fail_on_seq=(), gate: str | None = None):
    """Append ``[name, uid or i, pid]`` for every document to ``path``.

    - An event whose ``seq_num`` is in ``fail_on_seq`` raises instead (after nothing is written).
    - A document with ``"hold": True`` waits until the file ``gate`` exists before it is recorded.
    - At a stop document the child reports ``("stop", uid, documents recorded so far)`` to the parent.
    """
    out = open(path, "a")
    fail_on_seq = set(fail_on_seq)
    seen = [0]

    def callback(name, doc):
        if name == "event" and doc.get("seq_num") in fail_on_seq:
            raise ValueError(f"planted failure at event {doc['seq_num']}")
        if doc.get("hold"):
            while not os.path.exists(gate):
                time.sleep(0.005)
        out.write(json.dumps([name, doc.get("uid", doc.get("i")), os.getpid(), child_backlog()]) + "\n")
        out.flush()
        seen[0] += 1
        if name == "stop":
            report(("stop", doc["uid"], seen[0]))

    return callback


def broken_factory(reason: str):
    raise RuntimeError(reason)


def read(path) -> list:
    """What the child recorded: ``(name, uid or i)`` in order."""
    with open(path) as f:
        return [tuple(json.loads(line)[:2]) for line in f]


def scheduling_reporter():
    """At each document, report ``("sched", [(policy, niceness) of every thread of the child])``."""

    def callback(name, doc):
        tasks = os.listdir(f"/proc/{os.getpid()}/task")
        report(("sched", sorted((os.sched_getscheduler(int(t)), os.getpriority(os.PRIO_PROCESS, int(t)))
                                for t in tasks)))

    return callback
