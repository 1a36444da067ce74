"""Issue 12, a fuzz test: 10,000 hypothesis-made document streams reach both workers.

Each stream goes, message by message, through what ``run_worker`` does (decode, key the run,
handle, dead-letter with a reason, close runs left without a stop) into the reconstruction
worker's handler (``live_reconstruction_router``: the LiveReconstruction the worker runs, into
a MemorySink instead of Tiled) and the catalogue worker's guard (``ConfinedDocuments`` in a
RunRouter, as ``catalog_router`` builds it, with a recorder where TiledWriter would be; the real
TiledWriter against a real Tiled server is tests/system/test_fuzz_catalog.py).

The streams start from real runs (a step and a fly scan of a tiny phantom, written under the
data root) and carry hostile values: URIs out of the root by every route we know of, HDF5 files
in the root that link out, sizes, shapes, indices and angles that are negative, huge, NaN or not
numbers, strings of script and 100 kB, keys missing and extra, documents reordered, duplicated,
dropped, renamed, uids reused; besides those, random documents and raw bytes.

Per stream: nothing escapes that the loop would not turn into a dead letter (no crash, no
BaseException, nothing the worker would take for an outage and wait on forever), every reject
has a reason, every run followed ends with a volume or a failure that says why, no stream passes
its deadline, and no file outside the root is opened: h5py opens and Python opens are recorded,
and inotify watches the canaries outside the root (opens below Python, in the HDF5 library).

Found this way and fixed: an HDF5 external link (on a dataset, on a group on the way, or behind a
soft link) in a file under the root made HDF5 open and read the linked file outside the root before
the dataset was checked (tomobluesky.pipeline.open_dataset now refuses such links first).
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from event_model import RunRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tomobluesky
from tomobluesky import steps
from tests.fuzz_documents import (NUMERIC_READS, Canaries, Layout, OpenRecord, Watchdog, WorkerLoop, build_layout,
                                  encode, install_open_hooks, mutated_runs, random_documents, raw_streams)
from tomobluesky.catalog import ConfinedDocuments
from tomobluesky.live import MemorySink, live_reconstruction_router, read_frames
from tomobluesky.pipeline import DataRoots, uri_path
from tomobluesky.schema import ReconSettings
from tomobluesky.transport._decode import Malformed, decode_document

#: streams per test; together at least the 10,000 the issue asks for
N_MUTATED, N_NUMBERS, N_RANDOM, N_RAW = 1_000, 120, 880, 8_000
assert N_MUTATED + N_NUMBERS + N_RANDOM + N_RAW >= 10_000

#: random documents and raw streams are cheap to feed: several to an example spread hypothesis's own cost
#: per example (about a millisecond)
RANDOM_BATCH, RAW_BATCH = 2, 5

#: seconds one stream may take before it counts as a hang (a whole valid run takes about 0.05 s)
DEADLINE = 10.0

#: the worker's settings but for previews every 2 projections (so the runs' few projections make live slices)
DEFAULTS = ReconSettings(preview_interval_s=0, preview_every=2)
#: the same with the centre given and filtered back-projection: a volume then takes a third of the time, which
#: is what lets thousands of streams through; the numbers test below keeps the defaults (NUFFT, centre search)
SETTINGS = ReconSettings(preview_interval_s=0, preview_every=2, algorithm="fbp", center=7.5)

FUZZ = dict(deadline=None, database=None, derandomize=True, print_blob=True,
            suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.timeout(900)


@dataclass
class Fuzz:
    layout: Layout
    roots: DataRoots
    canaries: Canaries
    record: OpenRecord
    watchdog: Watchdog
    allowed: tuple  # directories Python-level opens may reach: the root, the sink's stores, code

    verdicts: dict = field(default_factory=dict)  # message → None (valid) or its Malformed, for one stream

    def decode(self, value):
        """``decode_document`` as the worker calls it. Schema validation is what costs, and the same bytes
        always get the same verdict, so it is done once per distinct message: the recorded runs' own
        messages are known to pass, and the second worker reuses the first one's verdict. Each worker
        still unpacks its own copy of the document."""
        if not isinstance(value, bytes):
            return decode_document(value)
        if value in self.layout.valid_messages:
            return decode_document(value, validate=False)
        if value not in self.verdicts:
            try:
                decode_document(value)
                self.verdicts[value] = None
            except Malformed as m:
                self.verdicts[value] = m
        if self.verdicts[value] is not None:
            raise self.verdicts[value]
        return decode_document(value, validate=False)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    layout = build_layout(tmp_path_factory.mktemp("fuzz"))
    canaries = Canaries(layout.outside, layout.outside / "sub")
    # package metadata (the processing steps' entry points) is read once per process, like an import: before
    # the hooks, which watch what documents make the workers open
    steps.available_steps()
    # numba compiles (or loads from its cache) the live kernels at a scan's first frame, importing and scanning
    # sys.path as it goes: that is code loading too, done once before the hooks watch
    from tomobluesky.live import _kernels

    _kernels.warm_up()
    install_open_hooks(patch)
    # the frames of the recorded runs are all on disk: there is no writer to wait for, so a datum asking
    # for frames the file lacks fails after its 20 re-reads at once instead of after 1 s of sleeping
    patch.setitem(read_frames.__kwdefaults__, "wait", 0.0)
    code = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    # installed distributions' metadata on sys.path (an editable install's egg-info in the checkout): libraries
    # imported lazily (numba's, zarr's codecs) read every distribution's entry points, as an import reads code
    code |= {m.resolve() for entry in sys.path if entry and Path(entry).is_dir()
             for m in Path(entry).glob("*.egg-info")}
    allowed = (layout.root.resolve(), layout.volumes.resolve(), Path(tomobluesky.__file__).parent.resolve(), *code)
    watchdog = Watchdog()
    try:  # tiny reconstructions: thread pools only add start-up and contention on a small machine
        import finufft  # noqa: F401  (loaded first, so that its OpenMP runtime is limited too)
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:
        limits = nullcontext()
    with limits:
        yield Fuzz(layout, DataRoots([layout.root]), canaries, OpenRecord(), watchdog, allowed)
    watchdog.close()
    canaries.close()
    patch.undo()


@dataclass
class Outcome:
    recon: WorkerLoop
    catalog: WorkerLoop
    runs: list
    sink: MemorySink
    passed: list
    seconds: float


def feed_both(fx: Fuzz, messages, settings: ReconSettings = SETTINGS) -> Outcome:
    """One stream through both workers, then every check of the module docstring."""
    sink = MemorySink(fx.layout.volumes)
    runs, passed = [], []
    recon = WorkerLoop(live_reconstruction_router(sink, settings, data_roots=fx.roots, raise_unavailable=True,
                                                  on_start=runs.append), decode=fx.decode)
    guard = RunRouter([lambda name, start: ([ConfinedDocuments(lambda n, d: passed.append((n, d)), fx.roots)], [])])
    catalog = WorkerLoop(guard, decode=fx.decode)
    fx.record.clear()
    fx.verdicts.clear()
    t0 = time.perf_counter()
    with fx.record.recording(), fx.watchdog.limit(DEADLINE):
        for worker in (recon, catalog):
            for value in messages:
                worker.feed(value)
            worker.finish()
    out = Outcome(recon, catalog, runs, sink, passed, time.perf_counter() - t0)
    check(fx, out)
    return out


_PROC = re.compile(r"/proc/\d+(/task/\d+)?/(statm|status|io)")


def check(fx: Fuzz, out: Outcome) -> None:
    root = fx.layout.root.resolve()
    for worker, label in ((out.recon, "reconstruction"), (out.catalog, "catalogue")):
        assert not worker.stalls, f"the {label} worker would take a bad document for an outage: {worker.stalls}"
        for reason, detail, name in worker.dead:
            assert reason.strip(), f"{label}: a dead letter without a reason ({detail!r})"
            said = detail.split(": ", 1)[1] if reason == "handler-error" else detail
            assert said.strip(), f"{label}: a {reason} dead letter for a {name} document does not say why: {detail!r}"
    for cb in out.runs:  # every run followed ends as a volume or as a failure with its reason
        result = cb.result
        assert result is not None, f"run {cb.scan_uid!r} was followed but never finished"
        if "error" in result:
            assert isinstance(result["error"], str) and result["error"].strip()
            assert cb.scan_uid is None or cb.scan_uid in out.sink.failures or out.sink.volume_status(cb.scan_uid)
        else:
            assert result.get("skipped") == "complete" or cb.scan_uid in out.sink.volumes, result
    for name, doc in out.passed:  # the catalogue registers only real paths under the root
        if name in ("stream_resource", "resource"):
            path = Path(uri_path(doc))
            assert str(path) == os.path.realpath(path) and path.is_relative_to(root), (name, doc)
    for path, mode in fx.record.hdf5:
        assert Path(path).is_relative_to(root) and mode == "r", f"h5py opened {path!r} ({mode})"
    for path, how in fx.record.python:
        real = os.path.realpath(path)
        assert any(Path(real).is_relative_to(a) for a in fx.allowed) or _PROC.fullmatch(real), \
            f"opened {path!r} ({how})"
    touched = fx.canaries.touched()
    assert not touched, f"files outside the root were opened or read: {touched}"


def test_the_recorded_runs_reconstruct_and_are_catalogued_through_the_loop(fuzz):
    """Not vacuous: unmutated, both runs pass both workers, their files are opened (and recorded)."""
    for kind, docs in fuzz.layout.runs.items():
        out = feed_both(fuzz, encode(docs), DEFAULTS)
        assert not out.recon.dead and not out.catalog.dead, (out.recon.dead, out.catalog.dead)
        (cb,) = out.runs
        assert "error" not in cb.result and cb.result["volume_shape"] == [2, 16, 16], cb.result
        assert out.sink.volumes[cb.scan_uid][0].shape == (2, 16, 16) and out.sink.previews
        assert {p for p, _ in fuzz.record.hdf5} <= {str(f.resolve()) for f in fuzz.layout.detector_files}
        assert fuzz.record.hdf5, "no HDF5 open was recorded: the instrumentation sees nothing"
        resources = [d for n, d in out.passed if n == "stream_resource"]
        assert len(resources) == sum(n == "stream_resource" for n, _ in docs)


def test_every_hostile_file_in_the_root_is_refused_without_reading_outside(fuzz):
    """The step run with every resource pointed at each hostile entry of the root in turn."""
    docs = fuzz.layout.runs["step"]
    for name, path in sorted(fuzz.layout.hostile_files.items()):
        uri = f"file://localhost{path}"
        hostile = [(n, dict(d, uri=uri) if n == "stream_resource" else d) for n, d in docs]
        out = feed_both(fuzz, encode(hostile))
        (cb,) = out.runs
        assert "error" in cb.result and not out.sink.volumes, (name, cb.result)
        if name.startswith(("hostile-link-", "hostile-fifo", "hostile-dir")) and "loop" not in name:
            assert out.catalog.dead, f"the catalogue guard let {name} through"  # refused by its path alone


def _run(fuzz, strategy, n, label, *, batch=1, settings_=SETTINGS):
    """``n`` hypothesis examples of ``strategy``, each ``batch`` streams (a list of them when batch > 1)."""
    seen = dict.fromkeys(("streams", "messages", "dead", "volumes", "failed_runs", "slowest", "feeding"), 0)

    @settings(max_examples=n, **FUZZ)
    @given(example=strategy)
    def one(example):
        for stream in (example if batch > 1 else [example]):
            messages = stream if label == "raw" else encode(stream)
            out = feed_both(fuzz, messages, settings_)
            seen["streams"] += 1
            seen["messages"] += len(messages)
            seen["dead"] += len(out.recon.dead) + len(out.catalog.dead)
            seen["volumes"] += len(out.sink.volumes)
            seen["failed_runs"] += sum("error" in cb.result for cb in out.runs)
            seen["slowest"] = max(seen["slowest"], out.seconds)
            seen["feeding"] += out.seconds

    t0 = time.perf_counter()
    one()
    print(f"\n{label}: {seen['streams']} streams, {seen['messages']} messages, {seen['dead']} dead letters, "
          f"{seen['volumes']} volumes, {seen['failed_runs']} runs failed with a reason, "
          f"slowest stream {seen['slowest']:.2f} s, {seen['feeding']:.1f} s feeding the workers, "
          f"{time.perf_counter() - t0:.1f} s in all")
    assert seen["streams"] >= n * batch
    return seen


def test_hostile_mutations_of_real_runs(fuzz):
    seen = _run(fuzz, mutated_runs(fuzz.layout), N_MUTATED, "mutated")
    assert seen["volumes"] > 0 and seen["failed_runs"] > 0 and seen["dead"] > 0  # both outcomes were reached


def test_hostile_numbers_with_the_workers_default_settings(fuzz):
    """Angles, shapes, ranges, the centre and per-scan settings, into NUFFT and the centre search."""
    seen = _run(fuzz, mutated_runs(fuzz.layout, reads=NUMERIC_READS), N_NUMBERS, "numbers", settings_=DEFAULTS)
    assert seen["volumes"] > 0 and seen["failed_runs"] > 0


def test_random_documents(fuzz):
    _run(fuzz, st.lists(random_documents(fuzz.layout), min_size=RANDOM_BATCH, max_size=RANDOM_BATCH),
         N_RANDOM // RANDOM_BATCH, "random", batch=RANDOM_BATCH)


def test_raw_messages(fuzz):
    seen = _run(fuzz, st.lists(raw_streams(fuzz.layout), min_size=RAW_BATCH, max_size=RAW_BATCH), N_RAW // RAW_BATCH,
                "raw", batch=RAW_BATCH)
    assert seen["dead"] > 0
