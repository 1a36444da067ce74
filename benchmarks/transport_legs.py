"""Where a paced document's latency goes: publish call → broker append → consumer receipt.

`benchmarks/transport.py` measures the whole way, from the RunEngine's publish call to a worker's
receipt. This script splits it in two at the broker: each topic is created with
``message.timestamp.type=LogAppendTime``, so every message carries the broker's clock at the moment it
was appended to the log. A plain confluent-kafka consumer in another process (decoding and, by
default, validating every document as the workers do) records that timestamp beside its own receipt
time. Both clocks are this machine's wall clock, so the two legs add up to the total.

Publishers run one after another against one broker (started here) in the order given, so that a
broker fresh from start-up (its JVM still compiling) can be told apart from a warm one: put
``floor`` first a few times to warm it.

    .venv/bin/python benchmarks/transport_legs.py --order floor,floor,ours,theirs,floor,ours,theirs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import transport as T  # noqa: E402  the same documents and publishers as the end-to-end benchmark


def consume(bootstrap: str, topic: str, expected: int, validate: bool, ready, out) -> None:
    """In a child process: (document id, broker append time s, receipt time s) for each message."""
    from confluent_kafka import Consumer

    from tomobluesky.transport._decode import decode_document

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"legs-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + 120
    while len(got) < expected and time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=1, timeout=0.05)
        if msgs:  # the first message waited for, then whatever is already there
            msgs += consumer.consume(num_messages=499, timeout=0)
        now = time.time()
        for m in msgs:
            if m.error() is None:
                name, doc = decode_document(m.value(), validate=validate)
                got.append((T.doc_id(name, doc), m.timestamp()[1] / 1e3, now))
        if consumer.assignment() and not ready.is_set():
            ready.set()
    consumer.close()
    out.put(got)


def run_one(make, bootstrap: str, docs, rate: float, validate: bool, ctx) -> dict:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"legs{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.type": "LogAppendTime"})]).values():
        fut.result(30)
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=consume, args=(bootstrap, topic, len(docs), validate, ready, out))
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("the consumer got no partition in 60 s")
    pub, finish = make(bootstrap, topic, tempfile.mkdtemp(prefix="journal-"))
    time.sleep(1.0)  # connected, idempotent producer id granted
    emit = {}
    for _, (name, doc) in T.paced(docs, rate):
        emit[T.doc_id(name, doc)] = time.time()
        pub(name, doc)
    finish()
    got = out.get(timeout=120)
    proc.join(30)
    legs = {"emit_to_append": [], "append_to_receipt": [], "total": []}
    for key, appended, received in got:
        if key in emit:
            legs["emit_to_append"].append(appended - emit[key])
            legs["append_to_receipt"].append(received - appended)
            legs["total"].append(received - emit[key])
    out_ = {leg: T.percentiles(v) for leg, v in legs.items()}
    out_["received"], out_["sent"] = len(legs["total"]), len(docs)
    return out_


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--order", default="floor,floor,ours,theirs,floor,ours,theirs",
                    help="publishers to run, in turn, on one broker (ours, theirs, floor; default: %(default)s)")
    ap.add_argument("--rate", type=float, default=1000.0, help="documents/s (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each paced run (default: %(default)s)")
    ap.add_argument("--no-validate", action="store_true", help="decode without event-model validation")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    makers = {"ours": T.ours, "theirs": T.theirs, "floor": T.floor}
    order = args.order.split(",")
    unknown = [w for w in order if w not in makers]
    if unknown:
        ap.error(f"unknown publisher(s) {unknown}; choose from {sorted(makers)}")

    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("tomobluesky.transport.librdkafka").setLevel(logging.CRITICAL)
    from tomobluesky.services import KafkaBroker

    docs = T.record_documents(int(args.rate * args.seconds))
    ctx = mp.get_context("spawn")
    results = {"load_average_at_start": os.getloadavg(), "runs": []}
    print("| # | publisher | publish → append p50 / p99 / max (ms) | append → receipt p50 / p99 / max | "
          "total p50 / p99 / max |\n|---|---|---|---|---|")
    with KafkaBroker() as broker:
        for i, who in enumerate(order, 1):
            r = run_one(makers[who], broker.bootstrap, docs, args.rate, not args.no_validate, ctx)
            results["runs"].append({"publisher": who, **r})
            cells = ["{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f}".format(**r[leg])
                     for leg in ("emit_to_append", "append_to_receipt", "total")]
            print(f"| {i} | {who} | " + " | ".join(cells) + " |", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    print("load average at start {:.1f}, at end {:.1f}".format(results["load_average_at_start"][0],
                                                                results["load_average_at_end"][0]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
