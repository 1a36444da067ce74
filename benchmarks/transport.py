"""Transport benchmark: tomobluesky's KafkaPublisher beside bluesky-kafka's Publisher.

Against one real broker (started here, from the Maven jars), with the same real
RunEngine documents (``count([det], n)``, ``ophyd.sim.det``) for both publishers:

1. burst: every document published as fast as possible → documents/s end to end
   (first publish call → last receipt by a consumer in another process) and the
   distribution of publish-call times;
2. paced at ``--rate`` documents/s → latency from the publish call (RunEngine emit)
   to receipt by the worker (p50/p99/max);
3. broker down: the broker is stopped and documents keep coming → publish-call
   times (then the broker is restarted and delivery checked).

Before the cases the bare producer publishes at the paced rate for ``--warm-s`` seconds (dropped), so
that the first publisher does not meet a broker whose JVM is still compiling its hot paths, and each
paced case starts with ``--prime-s`` seconds of untimed documents through its own publisher and consumer
(each case has a fresh publisher, topic and consumer, whose first fetches a beamline pays once a session).

The receiving side is tomobluesky's DocumentConsumer (decode + event_model
validation) in a separate process for both publishers; bluesky-kafka's messages
are msgpack-numpy, which it reads too.

    .venv/bin/python benchmarks/transport.py [--docs 20000] [--rate 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import uuid

import numpy as np


def record_documents(n_docs: int) -> list[tuple[str, dict]]:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    docs: list = []
    RE = RunEngine({}, call_returns_result=False)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    per_run = 1000
    while len(docs) < n_docs:
        RE(count([det], min(per_run, max(1, n_docs - len(docs) - 3))))
    return docs


def doc_id(name: str, doc: dict) -> str:
    return doc.get("uid") or doc.get("datum_id")


def consume(bootstrap: str, topic: str, expected: int, ready, out) -> None:
    """In a child process: receive ``expected`` documents, report (id, receipt ns)."""
    from tomobluesky.transport import DocumentConsumer, KafkaConfig

    consumer = DocumentConsumer(KafkaConfig(bootstrap=bootstrap, topic=topic), f"bench-{uuid.uuid4().hex[:6]}")
    seen: dict[str, int] = {}
    signalled = False
    deadline = time.monotonic() + 120
    while len(seen) < expected and time.monotonic() < deadline:
        for d in consumer.poll(timeout=0.05):
            seen.setdefault(doc_id(d.name, d.doc), time.monotonic_ns())
            if d.name == "stop":
                consumer.finish(d)
        if consumer.caught_up() and not signalled:  # assigned, fetching, at the end
            ready.set()
            signalled = True
    consumer.close()
    out.put(seen)


def ours(bootstrap: str, topic: str, journal: str):
    from tomobluesky.transport import KafkaConfig, KafkaPublisher

    pub = KafkaPublisher(KafkaConfig(bootstrap=bootstrap, topic=topic), journal_dir=journal)
    return pub, lambda: pub.close(120)


def theirs(bootstrap: str, topic: str, journal: str):
    from bluesky_kafka import Publisher

    pub = Publisher(topic=topic, bootstrap_servers=bootstrap, key=str(uuid.uuid4()),
                    producer_config={"acks": "all", "enable.idempotence": True})
    return pub, lambda: pub.flush()


def floor(bootstrap: str, topic: str, journal: str):
    """The floor both publishers stand on: a bare confluent-kafka producer (same acks and
    idempotence) called in the RunEngine's thread, no journal, no queue. Its latency tail is the
    broker's and the machine's, not a publisher's."""
    from confluent_kafka import Producer

    from tomobluesky.transport._codec import pack

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2})

    def publish(name, doc):
        producer.produce(topic, pack(name, doc))
        producer.poll(0)

    return publish, lambda: producer.flush(120)


class CallTimer:
    """Times each publish call three ways, to tell where a slow call went: wall time; this
    thread's CPU time (the call's own work); and garbage collection inside the call. A slow call
    with little CPU and no collection was runnable but not running: it waited for the GIL
    (another thread of this process) or for a core (the machine's load)."""

    def __init__(self, n: int):
        self.wall, self.cpu, self.gc = np.empty(n), np.empty(n), np.empty(n)
        self._gc_total = 0.0
        self._gc_start = None

    def _on_gc(self, phase, info):
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start is not None:
            self._gc_total += time.perf_counter() - self._gc_start

    def __enter__(self):
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._on_gc)

    def call(self, i, publish, name, doc):
        g0, c0, t0 = self._gc_total, time.thread_time(), time.perf_counter()
        publish(name, doc)
        self.wall[i] = time.perf_counter() - t0
        self.cpu[i] = time.thread_time() - c0
        self.gc[i] = self._gc_total - g0

    def summary(self) -> dict:
        out = percentiles(self.wall)
        slow = self.wall > 0.010
        out["over_10ms_own_cpu"] = int((slow & (self.cpu > 0.010)).sum())
        out["over_10ms_in_gc"] = int((slow & (self.gc > 0.005)).sum())
        out["over_10ms_waiting"] = int((slow & (self.cpu <= 0.010) & (self.gc <= 0.005)).sum())
        out["max_own_cpu_ms"] = float(self.cpu.max() * 1e3)
        return out


def percentiles(values_s) -> dict:
    a = np.asarray(values_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "p999_ms": float(np.percentile(a, 99.9)), "max_ms": float(a.max()),
            "over_10ms": int((a > 10).sum()), "n": int(a.size)}


def paced(docs, rate: float | None):
    """(index, document) at ``rate`` documents/s from the first (``None``: as fast as they come)."""
    t_start = time.monotonic()
    for i, item in enumerate(docs):
        if rate:
            wait = t_start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield i, item


def run_case(make, bootstrap, docs, rate: float | None, ctx, prime=()) -> dict:
    """Publish ``docs`` (paced at ``rate``, or as fast as possible) and time them to the consumer's receipt.

    ``prime`` documents go first through the same publisher to the same consumer, untimed, at the same
    pace: they take the path's one-time costs (the producer's first batches to a new topic, the
    consumer's first fetches), which a beamline's long-running publisher and workers pay once a session,
    not once a scan.
    """
    from tomobluesky.transport import KafkaConfig, ensure_topics

    topic = f"bench{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
    ensure_topics(KafkaConfig(bootstrap=bootstrap, topic=topic), partitions=1)
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=consume, args=(bootstrap, topic, len(prime) + len(docs), ready, out))
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("the consumer did not join its group in 60 s")
    pub, finish = make(bootstrap, topic, tempfile.mkdtemp(prefix="journal-"))
    stats = getattr(pub, "stats", None)
    time.sleep(1.0)  # let the producer connect (and get its idempotent producer id)
    for _, (name, doc) in paced(prime, rate):
        pub(name, doc)
    emit_ns, timer = {}, CallTimer(len(docs))
    with timer:
        for i, (name, doc) in paced(docs, rate):
            emit_ns[doc_id(name, doc)] = time.monotonic_ns()
            timer.call(i, pub, name, doc)
    finish()
    received = out.get(timeout=600)
    proc.join(30)
    lat = np.array([(received[k] - emit_ns[k]) / 1e9 for k in emit_ns if k in received])
    first = min(emit_ns.values())
    timed = [received[k] for k in emit_ns if k in received]
    last = max(timed) if timed else first
    series = [((emit_ns[k] - first) / 1e9, (received[k] - emit_ns[k]) / 1e6) for k in emit_ns if k in received]
    return {"series": series, "documents": len(docs), "received": len(received),
            "docs_per_s": len(timed) / ((last - first) / 1e9) if timed else 0.0,
            "latency": percentiles(lat) if lat.size else None, "publish_call": timer.summary(),
            "publisher_stats": dict(stats) if stats else None}


def run_down(make, broker, docs) -> dict:
    """Publish with the broker stopped; then restart it and count what arrives."""
    from tomobluesky.transport import KafkaConfig, ensure_topics

    topic = f"down{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
    ensure_topics(KafkaConfig(bootstrap=broker.bootstrap, topic=topic), partitions=1)
    pub, finish = make(broker.bootstrap, topic, tempfile.mkdtemp(prefix="journal-"))
    pub(*docs[0])  # connected before the outage
    time.sleep(1.0)
    broker.stop()
    timer = CallTimer(len(docs) - 1)
    try:
        with timer:
            for i, (name, doc) in enumerate(docs[1:]):
                timer.call(i, pub, name, doc)
                if i % 100 == 0:
                    time.sleep(0.01)  # a RunEngine does other work between documents
    finally:
        broker.start()
    t = time.monotonic()
    finish()
    return {"documents": len(docs), "publish_call": timer.summary(),
            "drain_after_restart_s": time.monotonic() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000, help="documents per case (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=1000.0, help="paced rate for latency (docs/s, default: %(default)s)")
    ap.add_argument("--down-docs", type=int, default=5000, help="documents published with the broker down")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--paced-s", type=float, default=10.0, help="length of the paced run (s, default: %(default)s)")
    ap.add_argument("--series", default=None,
                    help="write every document's (emit time s, latency ms) per case here (JSON), to see when the tail happens")
    ap.add_argument("--only", choices=["ours", "theirs", "floor"], default=None, help="run one publisher only")
    ap.add_argument("--prime-s", type=float, default=1.0,
                    help="before each paced case, publish this long at --rate through the same publisher to the same "
                         "consumer, untimed (the path's one-time start costs; 0: none; default: %(default)s)")
    ap.add_argument("--warm-s", type=float, default=20.0,
                    help="before the cases, publish with the bare producer at --rate for this long and drop the "
                         "result, so that every publisher meets a broker past its JVM's start-up compiling, as a "
                         "beamline's long-running broker is (0: none; default: %(default)s)")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("tomobluesky.transport.librdkafka").setLevel(logging.CRITICAL)
    from tomobluesky.services import KafkaBroker

    publishers = {"tomobluesky.KafkaPublisher": ours}
    try:
        import bluesky_kafka  # noqa: F401

        publishers["bluesky_kafka.Publisher"] = theirs
    except Exception as e:  # report ours alone
        print(f"bluesky-kafka not usable here ({type(e).__name__}: {e}); reporting tomobluesky alone", file=sys.stderr)
    publishers["confluent_kafka.Producer (floor)"] = floor
    if args.only:
        wanted = {"ours": ours, "theirs": theirs, "floor": floor}[args.only]
        publishers = {k: v for k, v in publishers.items() if v is wanted}
    ctx = mp.get_context("spawn")
    t = time.monotonic()
    docs = record_documents(args.docs)
    prime = record_documents(int(args.rate * args.prime_s)) if args.prime_s > 0 else []  # their own uids
    print(f"recorded {len(docs)} RunEngine documents in {time.monotonic() - t:.1f} s", file=sys.stderr)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average_at_start": os.getloadavg()}, "cases": {}}
    series: dict = {}
    with KafkaBroker() as broker:
        results["machine"]["kafka"] = broker.version
        if args.warm_s > 0:
            warm = run_case(floor, broker.bootstrap, docs[: int(args.rate * args.warm_s)], args.rate, ctx)
            results["warm_up"] = {"seconds": args.warm_s, "latency": warm["latency"]}
            print("warm-up (dropped): paced latency", json.dumps(warm["latency"]), file=sys.stderr)
        for label, make in publishers.items():
            r = results["cases"].setdefault(label, {})
            r["burst"] = run_case(make, broker.bootstrap, docs, None, ctx)
            series[f"{label} burst"] = r["burst"].pop("series")
            print(label, "burst", json.dumps(r["burst"]), file=sys.stderr)
            r["paced"] = run_case(make, broker.bootstrap, docs[: int(args.rate * args.paced_s)], args.rate, ctx,
                                  prime=prime)
            series[f"{label} paced"] = r["paced"].pop("series")
            print(label, "paced", json.dumps(r["paced"]), file=sys.stderr)
            print(label, "paced: latency over 15 ms by second of the run:", slow_seconds(series[f"{label} paced"]),
                  file=sys.stderr)
            r["broker_down"] = run_down(make, broker, docs[: args.down_docs])
            print(label, "down", json.dumps(r["broker_down"]), file=sys.stderr)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(table(results, args))
    print("load average (1, 5, 15 min) at start {} and end {}".format(
        *(" / ".join(f"{v:.1f}" for v in results["machine"][k]) for k in ("load_average_at_start",
                                                                         "load_average_at_end"))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.series:
        with open(args.series, "w") as f:
            json.dump(series, f)
    return 0


def slow_seconds(series) -> dict:
    """How many documents of each second of the run took over 15 ms (seconds with none left out)."""
    counts: dict = {}
    for t, lat in series:
        if lat > 15:
            counts[int(t)] = counts.get(int(t), 0) + 1
    return counts


def table(results, args) -> str:
    rows = ["| | " + " | ".join(results["cases"]) + " |", "|---|" + "---|" * len(results["cases"])]

    def row(label, get):
        cells = []
        for r in results["cases"].values():
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("–")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row(f"burst: documents/s end to end ({args.docs} docs)", lambda r: f"{r['burst']['docs_per_s']:,.0f}")
    row("burst: received / sent", lambda r: f"{r['burst']['received']} / {r['burst']['documents']}")
    row("burst: publish call p50 / p99 / max (ms)", lambda r: "{p50_ms:.3f} / {p99_ms:.3f} / {max_ms:.2f}".format(
        **r["burst"]["publish_call"]))
    row(f"paced {args.rate:.0f}/s: latency p50 / p99 / max (ms)",
        lambda r: "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f}".format(**r["paced"]["latency"]))
    row("burst: calls over 10 ms (own CPU / in GC / waiting for GIL or core)",
        lambda r: "{over_10ms} ({over_10ms_own_cpu} / {over_10ms_in_gc} / {over_10ms_waiting})".format(
            **r["burst"]["publish_call"]))
    row("burst: most CPU one call used (ms)", lambda r: "{max_own_cpu_ms:.2f}".format(**r["burst"]["publish_call"]))
    row("paced: publish call p50 / p99 / max (ms)", lambda r: "{p50_ms:.3f} / {p99_ms:.3f} / {max_ms:.2f}".format(
        **r["paced"]["publish_call"]))
    row(f"broker down: publish call p50 / p99 / max (ms), {args.down_docs} docs",
        lambda r: "{p50_ms:.3f} / {p99_ms:.3f} / {max_ms:.2f}".format(**r["broker_down"]["publish_call"]))
    row("broker down: calls over 10 ms", lambda r: str(r["broker_down"]["publish_call"]["over_10ms"]))
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
