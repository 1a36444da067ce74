"""The embedded default: a simulated beamline scan reconstructed live into a
local Tiled catalogue, all in one process (no broker)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from .catalog import PROCESSED, SpoolingSink, TiledServer, ensure_layout, raw_run_writer
from .devices import PhantomSource, ReplaySource
from .devices.oa import make_sim_beamline  # the ophyd-async end station
from .live import live_reconstruction_router
from .plans import tomo_fly_scan, tomo_scan
from .transport._inprocess import OffThread
from .schema import ReconSettings
from .pipeline import DEFAULT_BUDGET, peak_rss_mb, process_peak_rss_mb
from .viz import central_slices, save_slices_png

log = logging.getLogger(__name__)


def make_source(source: str, tooth_file: str | Path | None = None, phantom_size: int = 128):
    if source == "tooth":
        return ReplaySource(tooth_file)
    if source == "phantom":
        return PhantomSource(n_slices=max(8, phantom_size // 8), n_columns=phantom_size, axis_offset=6.5,
                             ring_strength=0.0)
    raise ValueError(f"unknown source {source!r}: choose 'tooth' or 'phantom'")


class _PauseOnSignals:
    """RunEngine context manager: SIGINT or SIGTERM during a scan pauses the RunEngine at once, and
    ``run_scan`` then aborts the run, so it ends with a stop document and a closed detector file.
    (A KeyboardInterrupt inside ``RE()`` would panic the RunEngine: no cleanup, no stop document.)
    A second signal is not waited on: it raises KeyboardInterrupt."""

    signalled = weakref.WeakSet()  # RunEngines that already got a signal

    def __init__(self, RE):
        self._RE = RE

    def __enter__(self):
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self._previous:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._RE in self.signalled:
            raise KeyboardInterrupt
        self.signalled.add(self._RE)
        # request_pause waits on the RunEngine's loop: never from the signal handler itself
        threading.Thread(target=self._pause, daemon=True).start()

    def _pause(self):
        try:
            self._RE.request_pause(defer=False)
        except Exception as err:  # already pausing, or the plan has just finished
            log.info("pause on signal not taken: %s", err)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_run_engine(md_dir: Path):
    """A RunEngine whose metadata (scan_id above all) persists in ``md_dir``, and which a stop signal
    pauses rather than panics (see ``_PauseOnSignals``)."""
    from bluesky import RunEngine
    from bluesky.utils import PersistentDict

    RE = RunEngine({}, context_managers=[_PauseOnSignals])
    RE.md = PersistentDict(str(md_dir))
    return RE


def run_scan(RE, source, write_dir, *, fly=False, num_projections=None, recon=None, md=None):
    """Run one tomography scan of ``source`` on a fresh simulated beamline."""
    camera, rotation, shutter, sample = make_sim_beamline(source, write_dir)
    if num_projections is None:
        num_projections = len(getattr(source, "theta_deg", [])) or 180
    plan = tomo_fly_scan if fly else tomo_scan
    kwargs = dict(num_projections=num_projections, recon=recon, md=md)
    if fly:
        kwargs["velocity"] = 180.0
    from bluesky.utils import RunEngineInterrupted

    try:
        uids = RE(plan(camera, rotation, shutter, sample, **kwargs))
    except RunEngineInterrupted:  # paused by a stop signal: end the run properly, then the demo
        if RE.state == "paused":
            _abort_quietly(RE)
        raise KeyboardInterrupt from None
    return uids[0], camera


def _abort_quietly(RE):
    """Abort the paused run. bluesky logs the RequestAbort that ends it with a full traceback; asked
    for here, it is noise."""
    from bluesky.utils import RequestAbort

    def not_the_abort(record):
        return not (record.exc_info and isinstance(record.exc_info[1], RequestAbort))

    logger = logging.getLogger("bluesky")
    logger.addFilter(not_the_abort)
    try:
        RE.abort("stopped by a signal")
    finally:
        logger.removeFilter(not_the_abort)


def _summary(server, frame_source, RE, camera, scan_uid, volume, center_info, *, source, fly, timings,
             preview_updates, png_note="") -> dict:
    """Save the PNG of the central slices and build the summary both demos print.
    ``volume`` may be lazy (level 0 in Tiled): only the central slices are read."""
    slices = central_slices(volume)
    png = save_slices_png(volume, server.layout.root / "png" / f"{scan_uid}.png", slices=slices,
                          title=f"{frame_source.metadata()['sample_name']}  scan {scan_uid[:8]}  "
                                f"centre {center_info['center']:.2f}{png_note}")
    values = np.concatenate([s.ravel() for s in slices.values()])
    summary = {
        "scan_uid": scan_uid, "scan_id": RE.md.get("scan_id"), "source": source,
        "scan_type": "fly" if fly else "step",
        "center": round(center_info["center"], 3), "center_method": center_info["center_method"],
        "center_confidence": round(center_info["center_confidence"], 3), "volume_shape": list(volume.shape),
        "tiled_uri": server.uri, "reader_key_file": str(server.layout.reader_key_file),
        "writer_key_file": str(server.layout.key_file), "data_dir": str(server.layout.root),
        "detector_file": str(camera.last_file), "png": str(png), "preview_updates": preview_updates,
        "timings": timings, "slices_range": [float(values.min()), float(values.max())],
        "levels": center_info.get("levels"), "read_amplification": center_info.get("read_amplification"),
    }
    if source == "phantom":
        summary["true_center"] = frame_source.center
    return summary


def live_off_thread(sink, settings: ReconSettings | None = None, *, on_stop=None, name: str = "live-reconstruction",
                    **kwargs) -> OffThread:
    """The live reconstruction router behind its own dispatcher, to subscribe to a RunEngine.

    The router is told the dispatcher's backlog (``backlog=``), so that when it falls
    behind it can skip ahead to the newest frames; the volume still uses every frame of the detector file.
    ``on_stop(doc)`` is called on the dispatcher's thread just before the router sees a stop document:
    when the stop reached the live path, not when the RunEngine emitted it. Other keyword arguments go to
    :func:`tomobluesky.live.live_reconstruction_router`.
    """
    dispatcher = None
    router = live_reconstruction_router(sink, settings, backlog=lambda: dispatcher.pending(), **kwargs)

    def deliver(doc_name, doc):
        if doc_name == "stop" and on_stop is not None:
            on_stop(doc)
        router(doc_name, doc)

    dispatcher = OffThread(deliver, name=name)
    return dispatcher


#: the catalogue writer's child process runs at this niceness: where cores are few, the scan gets the CPU
#: first (docs/benchmarks.md, "Off-thread against off-process": 1440 × 128 × 1280 on 2 shared cores, both
#: children at 10 cost the scan 8 % and 16 %, at 0 21 % and 39 %, off-thread 47 % and 33 %). The live
#: path's child stays at 0: at 10 it got no CPU during a short scan on a loaded machine and drew no preview.
CALLBACK_NICE = 10

#: the demo's Tiled server runs this many steps below the RunEngine's CPU priority (its own session's
#: autogroup included, see tomobluesky._priority): it answers the catalogue writer during every scan, and at
#: the same priority on 2 cores it took 10 CPU s of a 15 s scan (docs/benchmarks.md, issue 11)
SERVER_NICE = 10


class ChildRun:
    """What the parent knows of one run the live path handled in an OffProcess child (sent back by
    :func:`tomobluesky.transport._offprocess.report`): ``result`` and ``preview_updates`` once it stopped."""

    def __init__(self, uid: str):
        self.uid, self.result, self.preview_updates = uid, None, 0


def _tiled_client(tiled_uri: str, key_file: str | None):
    from tiled.client import from_uri

    from .keys import client_key

    return from_uri(tiled_uri, api_key=client_key(key_file))  # no file: $TOMOBLUESKY_TILED_API_KEY


def raw_run_writer_in_child(tiled_uri: str, key_file: str | None, backup_dir: str):
    """OffProcess factory: the raw-run TiledWriter, with its own Tiled client, built in the child
    (``key_file`` None: the key in the environment, which the child inherits)."""
    return raw_run_writer(_tiled_client(tiled_uri, key_file), backup_dir)


def live_router_in_child(tiled_uri: str, key_file: str, volume_dir: str, backup_dir: str,
                         settings: ReconSettings | None = None, *, progress: bool = False, **kwargs):
    """OffProcess factory: the live reconstruction router, built in the child with its own Tiled client.

    It tells the parent, through ``report``, when a stop document reached it (``("stop", uid, t)``, ``t`` on
    the ``time.perf_counter`` clock, which is system-wide on Linux), each run's result once it stopped, and
    (with ``progress``) projection and volume-row progress at most ten times a second. Its backlog is the
    child's queue. Other keyword arguments go to :func:`tomobluesky.live.live_reconstruction_router`.
    """
    from .catalog import TiledSink
    from .live import _kernels
    from .transport._offprocess import child_backlog, report

    _kernels.warm_up()  # numba's compile (or cache load) once a child, at its start, not in its first scan
    sink = SpoolingSink(TiledSink(_tiled_client(tiled_uri, key_file), volume_dir=volume_dir), backup_dir)
    if progress:
        last = {}

        def progress_of(kind):
            def send(done, total):
                now = time.monotonic()
                if done >= total or now - last.get(kind, 0.0) >= 0.1:
                    last[kind] = now
                    report((kind, done, total))
            return send
        kwargs.update(on_projection=progress_of("projection"), on_volume_rows=progress_of("volume_rows"))
    kwargs["backlog"] = child_backlog
    started, current = {}, [None]  # run uid → its LiveReconstruction (tomography runs only)
    router = live_reconstruction_router(sink, settings, on_start=lambda cb: started.update({current[0]: cb}),
                                        **kwargs)

    def deliver(doc_name, doc):
        if doc_name == "start":
            current[0] = doc["uid"]
        elif doc_name == "stop":
            report(("stop", doc["run_start"], time.perf_counter()))
        router(doc_name, doc)
        run = started.pop(doc["run_start"], None) if doc_name == "stop" else None
        if run is not None:
            report(("result", doc["run_start"], run.result, run.preview_updates))
    return deliver


def live_off_process(server, settings: ReconSettings | None = None, *, on_projection=None, on_volume_rows=None,
                     on_stop=None, name: str = "live-reconstruction", nice: int = 0, idle: bool = False,
                     **kwargs):
    """The live reconstruction router in its own child process (an ``OffProcess``), writing into
    ``server``'s catalogue: no longer sharing the RunEngine's GIL. Returns ``(dispatcher, runs)``: ``runs``
    gets a :class:`ChildRun` per run at its stop, its ``result`` filled in before ``flush()`` returns.
    ``on_projection``/``on_volume_rows``/``on_stop(uid, t)`` are called on the dispatcher's reader thread.
    ``nice`` and ``idle`` lower the child's CPU priority (see ``OffProcess``). ``kwargs`` (picklable: paths, numbers,
    settings) go to :func:`live_router_in_child`."""
    from .transport import OffProcess

    runs: list[ChildRun] = []

    def on_report(message):
        kind = message[0]
        if kind == "projection" and on_projection is not None:
            on_projection(*message[1:])
        elif kind == "volume_rows" and on_volume_rows is not None:
            on_volume_rows(*message[1:])
        elif kind == "stop":
            runs.append(ChildRun(message[1]))
            if on_stop is not None:
                on_stop(message[1], message[2])
        elif kind == "result":
            run = next((r for r in reversed(runs) if r.uid == message[1]), None) or ChildRun(message[1])
            run.result, run.preview_updates = message[2], message[3]
            if run not in runs:
                runs.append(run)

    ensure_layout(server.client())  # here, once: two children creating the containers at once would conflict
    factory_kwargs = dict(tiled_uri=server.uri, key_file=str(server.layout.key_file),
                          volume_dir=str(server.layout.volumes), backup_dir=str(server.layout.backup),
                          settings=settings, progress=on_projection is not None or on_volume_rows is not None,
                          **kwargs)
    return OffProcess(live_router_in_child, factory_kwargs, name=name, on_report=on_report, nice=nice,
                      idle=idle), runs


def raw_writer_off_process(server, name: str = "raw-run-writer", nice: int = 0, idle: bool = False):
    """The raw-run TiledWriter into ``server``'s catalogue, in its own child process."""
    from .transport import OffProcess

    ensure_layout(server.client())  # here, once: two children creating the containers at once would conflict
    return OffProcess(raw_run_writer_in_child, dict(tiled_uri=server.uri, key_file=str(server.layout.key_file),
                                                    backup_dir=str(server.layout.backup)), name=name, nice=nice,
                      idle=idle)


WORKER_KINDS = ("catalog", "reconstruction")


def _start_workers(kafka_bootstrap, beamline, server, algorithm):
    """The two worker processes of a Kafka deployment: catalogue writer and reconstruction."""
    import subprocess
    import sys

    procs = []
    for kind in WORKER_KINDS:
        cmd = [sys.executable, "-m", "tomobluesky.workers", kind, "--bootstrap", kafka_bootstrap,
               "--beamline", beamline, "--tiled-uri", server.uri, "--api-key-file", str(server.layout.key_file),
               "--group", f"demo-{kind}-{beamline}", "--volume-dir", str(server.layout.volumes),
               "--data-root", str(server.layout.detector)]
        if kind == "reconstruction" and algorithm:
            cmd += ["--algorithm", algorithm]
        log_fd = os.open(server.layout.root / f"worker-{kind}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:  # umask: the volumes and logs a worker writes are the service account's only
            procs.append(subprocess.Popen(cmd, stdout=log_fd, stderr=subprocess.STDOUT, umask=0o077))
        finally:
            os.close(log_fd)
    return procs


def _stop_workers(procs, timeout: float = 20.0):
    """Terminate the worker processes and wait for them; one that does not stop in ``timeout`` is killed."""
    import subprocess

    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_for_volume(client, scan_uid, timeout, workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processed = client[PROCESSED]
        if scan_uid in processed:
            md = processed[scan_uid].metadata
            if md.get("status") == "complete":
                return md
            if md.get("status") == "failed":
                raise RuntimeError(f"reconstruction of {scan_uid} failed: {md.get('reason')}")
        dead = [p for p in workers if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a worker exited with code {dead[0].returncode}; see worker-*.log in the data dir")
        time.sleep(0.25)
    raise TimeoutError(f"no complete volume for {scan_uid} after {timeout:.0f} s")


def run_demo_kafka(data_dir, kafka_bootstrap: str, *, source="tooth", tooth_file=None, fly=False,
                   num_projections=None, phantom_size=128, port=None, progress=True,
                   settings: ReconSettings | None = None, timeout: float = 300.0, kafka_config=None) -> dict:
    """The same scan, but documents go through a real Kafka broker to worker
    processes (catalogue writer and reconstruction), as at a beamline. ``kafka_config``
    (the settings' :meth:`~tomobluesky.config.Settings.kafka_config`) gives the site's client
    settings; the demo's own topic and journal replace its topic and journal."""
    import uuid

    from tiled.queries import Key

    from .transport import KafkaConfig, KafkaPublisher, ensure_topics

    frame_source = make_source(source, tooth_file, phantom_size)
    config = (kafka_config or KafkaConfig()).replace(
        bootstrap=kafka_bootstrap, beamline=f"demo{uuid.uuid4().hex[:8]}", topic=None,
        journal_dir=Path(data_dir).expanduser().resolve() / "kafka-journal")
    ensure_topics(config)
    with TiledServer(data_dir, port=port) as server:
        client = server.client()
        ensure_layout(client)  # before the workers look for it
        workers = _start_workers(kafka_bootstrap, config.beamline, server, (settings or ReconSettings()).algorithm)
        try:
            RE = make_run_engine(server.layout.root / "runengine-md")
            with KafkaPublisher(config) as publisher:
                RE.subscribe(publisher)
                t0 = time.perf_counter()
                scan_uid, camera = run_scan(RE, frame_source, server.layout.detector, fly=fly,
                                            num_projections=num_projections)
                t_scan = time.perf_counter() - t0
                if publisher.flush(60):
                    raise RuntimeError("documents are still waiting for the broker (kept in the journal)")
            md = _wait_for_volume(client, scan_uid, timeout, workers)
            t_done = time.perf_counter() - t0
            volume = client[PROCESSED].search(Key("scan_uid") == scan_uid).values().first()["0"]
            peaks = {"demo": peak_rss_mb(), "tiled": process_peak_rss_mb(server.pid)}
            peaks.update({f"{kind}_worker": process_peak_rss_mb(p.pid) for kind, p in zip(WORKER_KINDS, workers)})
            summary = _summary(server, frame_source, RE, camera, scan_uid, volume, md, source=source, fly=fly,
                               timings={}, preview_updates=md.get("preview_updates"), png_note=" (via Kafka)")
        finally:
            _stop_workers(workers)
        t = md["timings"]
        # registration here: what the stop-to-volume time spent beyond reconstructing
        # (documents through the broker, the volume into Tiled)
        summary["timings"] = {"acquisition": round(t_scan, 3), "reconstruction": round(t["total"], 3),
                              "registration": round(max(t_done - t_scan - t["total"], 0.0), 3),
                              "stop_to_volume": round(t_done - t_scan, 3)}
        summary["stop_to_volume_s"] = summary["timings"]["stop_to_volume"]
        summary["peak_rss_mb"] = round(max(v for v in peaks.values() if v is not None), 1)
        summary["peak_rss_mb_by_process"] = {k: _round(v) for k, v in peaks.items()}
        summary["transport"] = f"kafka {kafka_bootstrap} topic {config.document_topic}"
        return summary


def run_demo(data_dir: str | Path, *, source: str = "tooth", tooth_file=None, fly: bool = False,
             num_projections: int | None = None, phantom_size: int = 128, port: int | None = None,
             progress: bool = True, settings: ReconSettings | None = None,
             memory_budget: float | None = None, dask=None, callbacks: str = "process") -> dict:
    """Start Tiled in ``data_dir``, scan, reconstruct live, register, save a PNG.

    ``callbacks``: where the live reconstruction and the catalogue writer run, ``"process"`` (each in a
    child process, the writer's at ``CALLBACK_NICE``: they do not share the RunEngine's GIL) or
    ``"thread"`` (each on a thread of this one).

    Returns the summary the CLI prints (see ``tomobluesky demo --help``).
    """
    from tiled.queries import Key
    from tqdm import tqdm

    frame_source = make_source(source, tooth_file, phantom_size)
    with TiledServer(data_dir, port=port, nice=SERVER_NICE) as server:
        client = server.client()
        RE = make_run_engine(server.layout.root / "runengine-md")
        bar = tqdm(total=None, desc="projections", unit="frame", disable=not progress, leave=False)
        rows_bar = tqdm(total=None, desc="volume", unit="row", disable=not progress, leave=False)
        runs, stops = [], {}

        def on_projection(n, total):
            bar.total = total
            bar.update(n - bar.n)

        def on_volume_rows(done, total):
            rows_bar.total = total
            rows_bar.update(done - rows_bar.n)

        # the catalogue writer and the live reconstruction each work in their own child process (or, with
        # callbacks="thread", on their own thread): the RunEngine only sends documents to them, so neither
        # slows the scan through the GIL (nor does a Tiled outage: the raw run goes to the backup, the
        # volume's registration to the spool)
        live_kwargs = dict(memory_budget=memory_budget or DEFAULT_BUDGET, dask=dask,
                           center_memory=server.layout.root / "live-centers.json")
        if callbacks == "process":
            writer = raw_writer_off_process(server, nice=CALLBACK_NICE)
            live, runs = live_off_process(server, settings, on_projection=on_projection,
                                          on_volume_rows=on_volume_rows, data_roots=[str(server.layout.detector)],
                                          on_stop=lambda uid, t: stops.setdefault(uid, t), **live_kwargs)
            for dispatcher in (writer, live):  # not sharing the CPU with a child still importing; a child
                dispatcher.wait_ready(120)      # whose factory failed stops the demo here, saying why
        elif callbacks == "thread":
            writer = OffThread(raw_run_writer(client, server.layout.backup), name="raw-run-writer")
            live = live_off_thread(SpoolingSink(server.sink(), server.layout.backup), settings,
                                   on_projection=on_projection, on_start=runs.append, on_volume_rows=on_volume_rows,
                                   data_roots=[server.layout.detector],
                                   on_stop=lambda doc: stops.setdefault(doc["run_start"], time.perf_counter()),
                                   **live_kwargs)
        else:
            raise ValueError(f"callbacks must be 'process' or 'thread', got {callbacks!r}")
        RE.subscribe(writer)
        RE.subscribe(live)
        try:
            t0 = time.perf_counter()
            scan_uid, camera = run_scan(RE, frame_source, server.layout.detector, fly=fly,
                                        num_projections=num_projections)
            t_scan = time.perf_counter()  # the RunEngine emitted the stop document
            live.flush()
            t_done = time.perf_counter()  # the live path has handled the stop: the volume is complete
            writer.flush()  # the raw run is in Tiled (or its backup) before it is read back
            child_peaks = {f"{d.name}_child": process_peak_rss_mb(d.pid) for d in (live, writer)
                           if getattr(d, "pid", None)}  # before the children exit
        finally:  # also after a stop signal: the aborted run's documents still reach the catalogue
            _close_callbacks(live, writer)
        bar.close()
        rows_bar.close()
        result = runs[-1].result if runs else None
        if not result or "error" in result:
            raise RuntimeError(f"reconstruction of scan {scan_uid} failed: "
                               f"{(result or {}).get('error', 'no reconstruction ran')}")
        # read back through a separate client with the read-only key, as an analyst would
        t1 = time.perf_counter()
        reader = server.reader_client()
        node = reader[PROCESSED].search(Key("scan_uid") == scan_uid).values().first()
        raw_primary = reader["raw"][scan_uid]["primary"]["camera_image"]
        t_readback = time.perf_counter() - t1
        timings = result["timings"]
        summary = _summary(server, frame_source, RE, camera, scan_uid, node["0"], result, source=source, fly=fly,
                           preview_updates=runs[-1].preview_updates, timings={
                               "acquisition": round(t_scan - t0, 3),
                               "reconstruction": round(timings["total"], 3),
                               "registration": round(timings["register"] + t_readback, 3),
                               "stop_to_volume": round(t_done - stops[scan_uid], 3)})
        summary["raw_frames_in_tiled"] = int(raw_primary.shape[0])
        summary["callback_queues"] = {d.name: {k: d.stats()[k] for k in ("delivered", "errors", "max_backlog")}
                                      for d in (live, writer)}
        summary["stop_to_volume_s"] = summary["timings"]["stop_to_volume"]
        summary["peak_rss_mb_by_process"] = {"demo": round(peak_rss_mb(), 1),
                                             "tiled": _round(process_peak_rss_mb(server.pid)),
                                             **{k: _round(v) for k, v in child_peaks.items()}}
        summary["peak_rss_mb"] = max(v for k, v in summary["peak_rss_mb_by_process"].items()
                                     if v is not None and k != "tiled")
        summary["callbacks"] = callbacks
    return summary


def _close_callbacks(*dispatchers):
    """Close every dispatcher, even when one fails (a child process that died raises), then raise the
    first failure."""
    failure = None
    for dispatcher in dispatchers:
        try:
            dispatcher.close()
        except Exception as err:
            log.error("%s", err)
            failure = failure or err
    if failure is not None:
        raise failure


def _round(value):
    return None if value is None else round(value, 1)
