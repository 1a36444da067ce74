"""With the catalogue writer behind a dispatcher, a Tiled outage does not hold the RunEngine: the scan's
last events and its stop document are emitted while the writer is stuck in the Tiled client's retries,
and every document still reaches the backup afterwards (issue 11)."""

from __future__ import annotations

import threading
import time

import pytest

from tomobluesky.catalog import TiledServer, raw_run_writer, read_backup
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.plans import tomo_scan
from tomobluesky.transport import OffThread

pytestmark = pytest.mark.system
N = 24
OUTAGE_AT, GATE_AT = 4, N - 4  # primary event seq_nums


class CountingWriter:
    """Passes each document to the real TiledWriter, counting calls begun and returned."""

    def __init__(self, writer):
        self.writer = writer
        self.entered = self.returned = 0

    def __call__(self, name, doc):
        self.entered += 1
        try:
            self.writer(name, doc)
        finally:
            self.returned += 1


@pytest.fixture
def writer_retries(monkeypatch):
    """Count the Tiled client's retries on the writer's thread; fewer attempts than the default 10 keep
    the test short (the writer still waits seconds per request, backing off between attempts)."""
    import stamina.instrumentation
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 6)
    retries = []

    def hook(details):
        retries.append(threading.current_thread().name)

    before = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([hook])
    yield retries
    stamina.instrumentation.set_on_retry_hooks(before)


def test_the_scan_ends_while_the_writer_waits_for_tiled(RE, tmp_path, writer_retries):
    server = TiledServer(tmp_path / "catalog", startup_timeout=180).start()
    try:
        # one request per document: with the default batches (RAW_BATCH_SIZE) the writer may have no request
        # to make between the outage and the gate when it kept up before the outage (a quiet machine), and
        # then it never retries while the scan waits for it to
        counting = CountingWriter(raw_run_writer(server.client(), server.layout.backup, batch_size=1))
        writer = OffThread(counting, name="raw-run-writer")
        emitted, at_stop, at_gate = [], {}, {}
        descriptors = {}

        def probe(name, doc):  # on the RunEngine's thread, subscribed before the writer
            emitted.append((name, doc["uid"]))
            if name == "descriptor":
                descriptors[doc["uid"]] = doc["name"]
            if name == "event" and descriptors.get(doc["descriptor"]) == "primary":
                if doc["seq_num"] == OUTAGE_AT:
                    server.stop()
                if doc["seq_num"] == GATE_AT:  # hold the scan until the writer is stuck in Tiled's retries
                    _wait_until(lambda: "offthread-raw-run-writer" in writer_retries, "a retry by the writer")
                    at_gate.update(entered=counting.entered, returned=counting.returned)
            if name == "stop":
                at_stop.update(entered=counting.entered, returned=counting.returned, retries=len(writer_retries))

        RE.subscribe(probe)
        RE.subscribe(writer)
        uid, = RE(tomo_scan(*make_sim_beamline(PhantomSource(n_slices=4, n_columns=32, noise=False),
                                               server.layout.detector), num_projections=N, num_darks=1, num_flats=1))

        # the last events and the stop were emitted while the writer was inside one call, retrying
        assert at_gate["entered"] == at_gate["returned"] + 1
        assert (at_stop["entered"], at_stop["returned"]) == (at_gate["entered"], at_gate["returned"])
        assert at_stop["retries"] >= 1 and writer.pending() >= 5  # events after the gate, and the stop
        assert emitted[-1][0] == "stop"

        # the writer gives up on Tiled, then puts the whole run in the backup: nothing lost
        assert writer.flush(300) == 0
        stats = writer.stats()
        assert stats["delivered"] == stats["queued"] == len(emitted) and stats["errors"] == 0
        backups = list(server.layout.backup.glob("*.jsonl"))
        assert len(backups) == 1
        backed_up = read_backup(backups[0])
        assert _as_single_documents(backed_up) == emitted  # (events are backed up as event pages)
        assert backed_up[0][1]["uid"] == uid and backed_up[-1][1]["exit_status"] == "success"
        writer.close()
    finally:
        server.stop()


def _wait_until(predicate, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def _as_single_documents(documents):
    """(name, uid) of each document, event pages unpacked into their events."""
    out = []
    for name, doc in documents:
        if name == "event_page":
            out.extend(("event", uid) for uid in doc["uid"])
        else:
            out.append((name, doc["uid"]))
    return out
