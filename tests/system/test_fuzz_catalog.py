"""The document fuzz test (issue 12) against the real catalogue worker: ``catalog_router`` with
bluesky_tiled_plugins' TiledWriter and a real Tiled server.

tests/unit/test_fuzz_documents.py feeds over 10,000 streams to the guard that decides what
TiledWriter may register; here a few dozen hostile streams go all the way into Tiled, through
one worker loop (decode, handle, dead-letter, close runs left open) as a worker would run them.
Afterwards: nothing escaped the handler, nothing was taken for an outage, every reject has a
reason, every asset the streams made Tiled register is a real path under the data root, and
inotify saw no open of the canaries outside the root, by this process or by the server.

Found this way and fixed: an event holding a list or a map where its descriptor declares a scalar
made Tiled answer 500 at every try, which the worker takes for an outage (ConfinedDocuments now
refuses such events).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_documents import Canaries, WorkerLoop, build_layout, encode, fresh_uids, mutated_runs
from tomobluesky.workers import catalog_router

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

N_TILED = 12


def _assets_since(db: Path, data_source: int) -> list[str]:
    """The data URIs of every asset linked to a data source made after ``data_source``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return [uri for (uri,) in con.execute(
            "SELECT a.data_uri FROM assets a JOIN data_source_asset_association d ON a.id = d.asset_id "
            "WHERE d.data_source_id > ?", (data_source,))]


def _last_data_source(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT COALESCE(MAX(id), 0) FROM data_sources").fetchone()[0]


def test_tiled_writer_registers_nothing_outside_the_root(tiled_server, tmp_path_factory):
    catalog = tiled_server.layout
    # the root lies in the server's readable storage, as in a deployment; the canaries lie elsewhere
    root = catalog.detector / f"fuzz-{uuid.uuid4().hex[:8]}"
    layout = build_layout(tmp_path_factory.mktemp("fuzz-tiled"), root=root)
    canaries = Canaries(layout.outside, layout.outside / "sub")
    before = _last_data_source(catalog.catalog_db)
    worker = WorkerLoop(catalog_router(tiled_server.client(), data_roots=[root]))
    fed = {"streams": 0, "dead": 0}

    @settings(max_examples=N_TILED, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(docs=mutated_runs(layout))
    def one(docs):
        # new uids for every stream: the worker skips a run the catalogue already holds complete
        worker.dead.clear()
        for value in encode(fresh_uids(docs)):
            worker.feed(value)
        worker.finish()
        assert not worker.stalls, f"the catalogue worker would take a bad document for an outage: {worker.stalls}"
        for reason, detail, name in worker.dead:
            assert reason.strip() and detail.split(": ", 1)[-1].strip(), (reason, detail, name)
        touched = canaries.touched()
        assert not touched, f"files outside the root were opened or read: {touched}"
        fed["streams"] += 1
        fed["dead"] += len(worker.dead)

    try:
        one()
        # the recorded runs themselves, unmutated, register their detector files under the root
        for docs in layout.runs.values():
            worker.dead.clear()
            for value in encode(fresh_uids(docs)):
                worker.feed(value)
            worker.finish()
            assert not worker.dead and not worker.stalls, (worker.dead, worker.stalls)
        assert not canaries.touched()
    finally:
        canaries.close()
    assert fed["streams"] >= N_TILED
    real_root = root.resolve()
    registered = _assets_since(catalog.catalog_db, before)
    files = [Path(unquote(urlparse(uri).path)) for uri in registered if uri.startswith("file:")]
    assert files, "no detector file was registered: the test saw nothing go through"
    for path in files:
        assert str(path) == os.path.realpath(path) and path.is_relative_to(real_root), path
    print(f"\n{fed['streams']} streams into Tiled, {fed['dead']} dead letters, {len(files)} files registered, "
          f"all under {real_root}")
    others = [uri for uri in registered if not uri.startswith("file:")]
    assert all(uri.startswith(("sqlite:", "duckdb:")) for uri in others), others  # event tables


@pytest.mark.parametrize("value", [["a", "b"], [1.0, 2.0], {"a": 1}])
def test_an_event_value_tiled_cannot_store_is_dead_lettered_not_waited_on(tiled_server, tmp_path_factory, value):
    """Found by the fuzz test above: a list or a map where the descriptor declares a scalar made Tiled
    answer 500 to every try to store the stream's table; the worker took that for an outage and would
    have re-read the run forever. Now the event is refused with its reason and the run is catalogued."""
    root = tiled_server.layout.detector / f"fuzz-{uuid.uuid4().hex[:8]}"
    layout = build_layout(tmp_path_factory.mktemp("unstorable"), root=root)
    docs = fresh_uids(layout.runs["step"])
    first_event = next(i for i, (name, _) in enumerate(docs) if name == "event")
    name, event = docs[first_event]
    docs[first_event] = (name, {**event, "data": {**event["data"], "rotation": value}})
    client = tiled_server.client()
    worker = WorkerLoop(catalog_router(client, data_roots=[root]))
    for message in encode(docs):
        worker.feed(message)
    assert not worker.stalls
    ((reason, detail, doc_name),) = worker.dead
    assert reason == "handler-error" and "UnstorableValue" in detail and "'rotation'" in detail
    uid = docs[0][1]["uid"]
    assert client["raw"][uid].metadata["stop"]["exit_status"] == "success"
