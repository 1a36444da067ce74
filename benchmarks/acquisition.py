"""Acquisition rate with and without the live pipeline subscribed (issue 11), in one run.

    .venv/bin/python benchmarks/acquisition.py [--projections 1440] [--rows 128] [--columns 1280]
                                               [--pairs 1] [--fly] [--json out.json] [--compare]

The same simulated scan (a phantom with the axis 21.25 px off the middle,
written by the simulated camera to its HDF5 file) is run on one RunEngine:

    bare   nothing subscribed but a probe that keeps the start and stop documents;
    live   the demo's in-process pipeline: the live reconstruction (with its stop
           path, the final volume) and the raw-run TiledWriter into a real
           ``tiled serve``, each behind its own ``OffThread`` dispatcher.

The acquisition rate is frames (projections, darks and flats) over the time
from the start document to the stop document, as the RunEngine stamped them.
After a live scan the script waits for both dispatchers to drain (stop → the
volume complete in Tiled) before the next scan starts, so one scan's
processing never overlaps the next one's acquisition. ``--pairs`` runs bare and
live alternately that many times (the load on a shared machine drifts); the
summary compares the medians. ``cpu_ms_per_frame`` is the process's CPU time
over all threads per frame: the live pipeline's cost shows there even when the
rate holds.

``--compare`` runs seven cases in turn, ``--pairs`` rounds of them (bare, the pipeline behind
``OffThread``, the pipeline behind ``OffProcess``: each callback in its own child process, fed by a
pipe, so that it no longer takes the RunEngine's GIL, and the same with the children at nice 10, so
that the scan gets the CPU first, and with only the writer's child at nice 10; ``process idle`` runs
both children under SCHED_IDLE, ``process idle live only`` the live child alone (no raw-run writer, so
the Tiled server only takes the previews); ``--cases`` picks some); it prints the load average before and after.
``re_cpu_s`` is the CPU time of the RunEngine's process (all its threads) over the scan, ``child_cpu_s``
that of the callbacks' child processes from the scan's start to their drain (``..._during_scan_s``: to
the stop document), ``tiled_cpu_s`` that of the Tiled server over the scan and the drain (``tiled_cpu_during_scan_s``: to the stop).
``re_runqueue_wait_s`` is the time the RunEngine's threads spent runnable but waiting for a CPU
(Linux schedstat): the scan's loss to other work, as opposed to its own CPU or I/O. ``--tiled-nice N``
runs the Tiled server N steps below the script's priority, its session's autogroup included (the
demo's and the profile's default is 10; see ``tomobluesky._priority``).

``--contention`` instead runs the scan bare, beside a thread spinning in pure
Python, beside a process doing the same, and beside that process under SCHED_IDLE
(``--pairs`` rounds): what a callback costs the RunEngine through the GIL (thread)
beyond the CPU it takes (process), and what is left when it only takes CPU time
the scan does not ask for (idle process: the machine's own share, e.g. two
virtual CPUs on one physical core); ``streaming process`` takes a core with
array work through memory instead of pure Python (what sharing the memory
bandwidth and the last-level cache costs the scan, beyond the core).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

AXIS_OFFSET = 21.25


def _scan(RE, source, detector_dir, projections, fly):
    from tomobluesky.devices import make_sim_beamline
    from tomobluesky.plans import tomo_fly_scan, tomo_scan

    devices = make_sim_beamline(source, detector_dir)
    plan = tomo_fly_scan(*devices, num_projections=projections, velocity=1e6) if fly else \
        tomo_scan(*devices, num_projections=projections)
    marks = {}
    token = RE.subscribe(lambda name, doc: marks.setdefault(name, doc), "all")
    cpu, waited = time.process_time(), _runqueue_wait_s()
    try:
        uid, = RE(plan)
    finally:
        RE.unsubscribe(token)
    cpu, waited = time.process_time() - cpu, _runqueue_wait_s() - waited
    start, stop = marks["start"], marks["stop"]
    frames = projections + start.get("num_darks", 10) + start.get("num_flats", 10)
    seconds = stop["time"] - start["time"]
    return uid, {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 2),
                 "cpu_ms_per_frame": round(1e3 * cpu / frames, 2), "re_cpu_s": round(cpu, 2),
                      "re_runqueue_wait_s": round(waited, 2)}


def _runqueue_wait_s() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat): the
    scan's loss to other work on the machine, as opposed to its own CPU or I/O."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def bare_scan(RE, source, detector_dir, projections, fly) -> dict:
    _, result = _scan(RE, source, detector_dir, projections, fly)
    return {"case": "bare", **result}


def live_scan(RE, server, source, projections, fly) -> dict:
    from tomobluesky.catalog import SpoolingSink, raw_run_writer
    from tomobluesky.demo import live_off_thread
    from tomobluesky.transport import OffThread

    runs = []
    writer = OffThread(raw_run_writer(server.client(), server.layout.backup), name="raw-run-writer")
    live = live_off_thread(SpoolingSink(server.sink(), server.layout.backup), on_start=runs.append,
                           data_roots=[server.layout.detector])
    tokens = [RE.subscribe(writer), RE.subscribe(live)]
    try:
        uid, result = _scan(RE, source, server.layout.detector, projections, fly)
        t_stop = time.perf_counter()
        left = live.flush() + writer.flush()
        drained = time.perf_counter() - t_stop
    finally:
        for token in tokens:
            RE.unsubscribe(token)
        live.close()
        writer.close()
    run = runs[-1]
    if left or not run.result or "error" in run.result:
        raise RuntimeError(f"live pipeline failed: {left} documents left, result {run.result}")
    return {"case": "live", **result, "stop_to_drained_s": round(drained, 2),
            "max_backlog": {"live": live.stats()["max_backlog"], "writer": writer.stats()["max_backlog"]},
            "preview_updates": run.preview_updates, "skipped": getattr(run, "skipped", None),
            "callback_errors": live.stats()["errors"] + writer.stats()["errors"]}


def _child_cpu_s(pid) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_scan(RE, server, source, projections, fly, nice=0, live_nice=None, idle=False,
                 writer_too=True) -> dict:
    """The same pipeline as ``live_scan``, each callback in an ``OffProcess`` child (at ``nice``; the
    live path's at ``live_nice`` when given; both under SCHED_IDLE with ``idle``); without the raw-run
    writer when not ``writer_too``."""
    from tomobluesky.demo import live_off_process, raw_writer_off_process

    writer = raw_writer_off_process(server, nice=nice, idle=idle) if writer_too else None
    live_nice = nice if live_nice is None else live_nice
    live, runs = live_off_process(server, data_roots=[str(server.layout.detector)], nice=live_nice, idle=idle)
    dispatchers = [d for d in (writer, live) if d is not None]
    for dispatcher in dispatchers:
        if not dispatcher.wait_ready(300):
            raise RuntimeError(f"{dispatcher.name}: the child never became ready: {dispatcher.stats()}")
    pids = [d.pid for d in dispatchers]
    cpu0 = [_child_cpu_s(pid) for pid in pids]
    tiled0 = _child_cpu_s(server.pid)
    tokens = [RE.subscribe(d) for d in dispatchers]
    try:
        uid, result = _scan(RE, source, server.layout.detector, projections, fly)
        t_stop = time.perf_counter()
        child_cpu_scan = sum(_child_cpu_s(pid) - c for pid, c in zip(pids, cpu0))
        tiled_cpu_scan = _child_cpu_s(server.pid) - tiled0
        left = sum(d.flush() for d in dispatchers)
        drained = time.perf_counter() - t_stop
        child_cpu = sum(_child_cpu_s(pid) - c for pid, c in zip(pids, cpu0))
    finally:
        for token in tokens:
            RE.unsubscribe(token)
        for d in dispatchers:
            d.close()
    run = runs[-1] if runs else None
    if left or run is None or not run.result or "error" in run.result:
        raise RuntimeError(f"live pipeline failed: {left} documents left, result {run and run.result}")
    case = "process idle" if idle else "process" if not nice else f"process nice {nice}" if live_nice == nice else \
        f"process writer nice {nice}"
    if not writer_too:
        case = f"{case} live only"
    return {"case": case, **result, "stop_to_drained_s": round(drained, 2),
            "child_cpu_s": round(child_cpu, 2), "child_cpu_during_scan_s": round(child_cpu_scan, 2),
            "tiled_cpu_during_scan_s": round(tiled_cpu_scan, 2),
            "max_backlog": {d.name: d.stats()["max_backlog"] for d in dispatchers},
            "preview_updates": run.preview_updates,
            "callback_errors": sum(d.stats()["errors"] for d in dispatchers)}


CASES = ("bare", "thread", "process", "process nice 10", "process writer nice 10", "process idle",
         "process idle live only")


def compare(RE, server, source, projections, fly, rounds, cases=CASES) -> list:
    """bare, off-thread, off-process and off-process at nice 10 in turn, ``rounds`` times (the load
    drifts: interleave)."""
    runs = []
    for r in range(rounds):
        # every other round in reverse order (bare last), so that neither case always runs first: on a
        # machine whose speed drifts, a fixed order would give one case the earlier (faster) slot
        for case in (cases if r % 2 == 0 else tuple(reversed(cases))):
            tiled_cpu = _child_cpu_s(server.pid)
            if case == "bare":
                runs.append(bare_scan(RE, source, server.layout.detector, projections, fly))
            elif case == "thread":
                runs.append({**live_scan(RE, server, source, projections, fly), "case": "thread"})
            else:
                runs.append(process_scan(RE, server, source, projections, fly, nice=10 if "nice" in case else 0,
                                         live_nice=0 if "writer" in case else None, idle="idle" in case,
                                         writer_too="live only" not in case))
            runs[-1]["load_average"] = os.getloadavg()
            runs[-1]["round"] = r + 1
            runs[-1]["tiled_cpu_s"] = round(_child_cpu_s(server.pid) - tiled_cpu, 2)  # scan and drain
            print(json.dumps(runs[-1]), flush=True)
    return runs


def _spin(stop):
    """Pure-Python work, holding the GIL as a callback's Python code does."""
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i * i


def _stream(stop):
    """Array work that streams through memory, as the pipeline's reads, folding and writes do: one core's
    worth of copies of a 64 MB array (beyond any cache), so the scan shares memory bandwidth and the L3 with it."""
    import numpy as np

    a, b = np.ones(16 * 2**20, np.float32), np.empty(16 * 2**20, np.float32)
    while not stop.is_set():
        np.multiply(a, 1.0001, out=b)
        a, b = b, a


CONTENTION_CASES = ("bare", "busy thread", "busy process", "busy idle process", "streaming process")


def _spin_idle(stop):
    """The same work in a process under SCHED_IDLE: it runs only on CPU time the scan leaves."""
    from tomobluesky._priority import lower_priority

    lower_priority(os.getpid(), 0, idle=True)
    _spin(stop)


def contention(RE, source, detector_dir, projections, fly, rounds, cases=CONTENTION_CASES) -> list:
    import multiprocessing
    import threading

    spawn = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(rounds):
        for case in cases:
            stop = spawn.Event() if "process" in case else threading.Event()
            worker = (spawn.Process(target=_spin, args=(stop,)) if case == "busy process" else
                      spawn.Process(target=_stream, args=(stop,)) if case == "streaming process" else
                      spawn.Process(target=_spin_idle, args=(stop,)) if case == "busy idle process" else
                      threading.Thread(target=_spin, args=(stop,), daemon=True) if case == "busy thread" else None)
            if worker is not None:
                worker.start()
            try:
                _, result = _scan(RE, source, detector_dir, projections, fly)
            finally:
                stop.set()
                if worker is not None:
                    worker.join()
            runs.append({"case": case, **result})
            print(json.dumps(runs[-1]), flush=True)
    return runs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projections", type=int, default=1440)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--columns", type=int, default=1280)
    parser.add_argument("--pairs", type=int, default=1, help="bare and live scans run alternately this many times")
    parser.add_argument("--fly", action="store_true", help="fly scans (default: step scans, as the demo)")
    parser.add_argument("--dir", type=Path, default=None, help="where the catalogue and detector files go")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the detector files and catalogue (~1 GB a scan)")
    parser.add_argument("--compare", action="store_true",
                        help="bare, off-thread and off-process pipelines in turn, --pairs rounds")
    parser.add_argument("--cases", default=None,
                        help=f"with --compare: a comma-separated subset of {','.join(CASES)}; with --contention: "
                             f"of {','.join(CONTENTION_CASES)} (bare needed)")
    parser.add_argument("--tiled-nice", type=int, default=0,
                        help="start the Tiled server at this niceness (0-19; the demo's is 10)")
    parser.add_argument("--tiled-idle", action="store_true",
                        help="start the Tiled server in this session under SCHED_IDLE (see TiledServer's idle)")
    parser.add_argument("--contention", action="store_true",
                        help="scan bare, beside a busy thread, a busy process and a busy SCHED_IDLE process instead (no Tiled)")
    args = parser.parse_args(argv)

    from bluesky import RunEngine

    from tomobluesky.catalog import TiledServer
    from tomobluesky.devices import PhantomSource

    source = PhantomSource(n_slices=args.rows, n_columns=args.columns, axis_offset=AXIS_OFFSET, seed=1)
    root = Path(tempfile.mkdtemp(prefix="acq-bench-", dir=args.dir))
    RE = RunEngine({})
    runs = []
    if args.contention:
        try:
            cases = tuple(args.cases.split(",")) if args.cases else CONTENTION_CASES
            if set(cases) - set(CONTENTION_CASES) or "bare" not in cases:
                raise SystemExit(f"--cases: choose among {', '.join(CONTENTION_CASES)}, with bare; got {args.cases!r}")
            runs = contention(RE, source, root, args.projections, args.fly, args.pairs, cases)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        rates = {case: statistics.median(r["frames_per_s"] for r in runs if r["case"] == case)
                 for case in cases}
        print("median frames/s: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
              + f"; load average {os.getloadavg()}")
        return {"contention": rates, "runs": runs, "load_average": os.getloadavg()}
    if args.compare:
        return _main_compare(args, RE, source, root)
    try:
        with TiledServer(root / "catalog", startup_timeout=300) as server:
            for _ in range(args.pairs):
                runs.append(bare_scan(RE, source, server.layout.detector, args.projections, args.fly))
                print(json.dumps(runs[-1]), flush=True)
                runs.append(live_scan(RE, server, source, args.projections, args.fly))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    rate = {case: statistics.median(r["frames_per_s"] for r in runs if r["case"] == case) for case in ("bare", "live")}
    summary = {
        "scan": f"{'fly' if args.fly else 'step'} {args.projections} × {args.rows} × {args.columns} float32",
        "bare_frames_per_s": rate["bare"], "live_frames_per_s": rate["live"],
        "difference_pct": round(100 * (rate["live"] - rate["bare"]) / rate["bare"], 1),
        "target": "within 5 %", "load_average": os.getloadavg(), "runs": runs,
    }
    print(f"bare {rate['bare']:.1f} frames/s, live {rate['live']:.1f} frames/s: "
          f"{summary['difference_pct']:+.1f} % (target within 5 %); load average {summary['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


def paired_differences(runs: list, cases) -> dict:
    """Each case against the bare scan of its own round, in %: the machine's speed drifts between rounds
    by more than the effect sought, so comparing adjacent scans removes most of the drift."""
    out = {}
    for c in cases:
        if c == "bare":
            continue
        diffs = []
        for r in sorted({run["round"] for run in runs}):
            bare = [x["frames_per_s"] for x in runs if x["round"] == r and x["case"] == "bare"]
            case = [x["frames_per_s"] for x in runs if x["round"] == r and x["case"] == c]
            if bare and case:
                diffs.append(round(100 * (case[0] - bare[0]) / bare[0], 1))
        out[c] = {"rounds": diffs, "median": statistics.median(diffs) if diffs else float("nan")}
    return out


def _main_compare(args, RE, source, root) -> dict:
    from tomobluesky.catalog import TiledServer

    cases = tuple(args.cases.split(",")) if args.cases else CASES
    unknown = set(cases) - set(CASES)
    if unknown or "bare" not in cases:
        raise SystemExit(f"--cases: choose among {', '.join(CASES)}, with bare; got {args.cases!r}")
    load_before = os.getloadavg()
    print(f"load average before: {load_before}; Tiled server at nice {args.tiled_nice}"
          f"{', SCHED_IDLE' if args.tiled_idle else ''}", flush=True)
    try:
        with TiledServer(root / "catalog", startup_timeout=300, nice=args.tiled_nice, idle=args.tiled_idle) as server:
            runs = compare(RE, server, source, args.projections, args.fly, args.pairs, cases)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    rate = {c: statistics.median(r["frames_per_s"] for r in runs if r["case"] == c) for c in cases}
    cpu = {c: statistics.median(r["re_cpu_s"] for r in runs if r["case"] == c) for c in cases}
    summary = {
        "scan": f"{'fly' if args.fly else 'step'} {args.projections} × {args.rows} × {args.columns} float32",
        "median_frames_per_s": rate, "median_re_cpu_s": cpu, "tiled_nice": args.tiled_nice,
        "tiled_idle": args.tiled_idle,
        "difference_pct": {c: round(100 * (rate[c] - rate["bare"]) / rate["bare"], 1) for c in cases if c != "bare"},
        "paired_difference_pct": paired_differences(runs, cases),
        "target": "within 5 %", "load_average": {"before": load_before, "after": os.getloadavg()}, "runs": runs,
    }
    print("median frames/s: " + ", ".join(f"{c} {rate[c]:.1f}" for c in cases)
          + "; against bare: " + ", ".join(f"{c} {v:+.1f} %" for c, v in summary["difference_pct"].items())
          + "; against the same round's bare (median, rounds): " + ", ".join(
              f"{c} {p['median']:+.1f} % ({', '.join(f'{x:+.1f}' for x in p['rounds'])})"
              for c, p in summary["paired_difference_pct"].items())
          + "; RunEngine process CPU s: " + ", ".join(f"{c} {cpu[c]:.1f}" for c in cases)
          + f"; load average {load_before} -> {summary['load_average']['after']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
