"""Preview lag at detector rate (issue 11): how far behind the newest frame the live slices are shown.

1. Record (untimed): a step ``tomo_scan`` of the simulated beamline, its camera writing uint16 frames
   to its HDF5 file, every document kept.
2. Replay: the same documents, paced as a detector at ``--rate`` frames/s would send them (each
   projection's documents at ``t0 + k / rate``), into the live reconstruction behind its ``OffThread``
   dispatcher with the dispatcher's backlog wired in (``demo.live_off_thread``), previews into a
   ``MemorySink`` or, with ``--tiled``, a real ``tiled serve``; with ``--child``, the demo's layout: the
   live path in an ``OffProcess`` child (its queue as its backlog) writing into Tiled (``--tiled-nice 10``
   as the demo starts its server).

For every preview: **lag** = when the preview's write returned − when the newest projection folded into
it was emitted, and how many projections had been emitted and not yet shown. When the live path keeps
up, lag is one fold plus one preview; when it falls behind it folds the newest frames first and shows
them at least every ``BEHIND_REFRESH_S`` (the final volume still reads every frame from the file).
The stop document is not replayed: the stop path is measured elsewhere (``benchmarks/scale.py``).

    .venv/bin/python benchmarks/live_lag.py                    # 512² at 500/s, then 2048² at 100/s
    .venv/bin/python benchmarks/live_lag.py --cases 2048:100:300 --tiled
    .venv/bin/python benchmarks/live_lag.py --child --tiled-nice 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


class LightPhantomSource:
    """Frames of one Shepp-Logan sinogram, every detector row a scaled copy, made per call (a 2048² scan
    of hundreds of projections would not fit in memory precomputed)."""

    def __init__(self, rows, columns, angles_deg):
        from tomobluesky.recon import project, shepp_logan

        self.shape = (rows, columns)
        self._angles = np.asarray(angles_deg)
        self._sino = project(shepp_logan(min(columns, 512)) * 0.02 * min(columns, 512) / columns,
                             np.radians(self._angles))[0]
        if columns > self._sino.shape[1]:  # a smaller phantom, stretched: the content does not matter here
            x = np.linspace(0, self._sino.shape[1] - 1, columns)
            self._sino = np.stack([np.interp(x, np.arange(self._sino.shape[1]), s) for s in self._sino])
        self._scale = np.linspace(0.6, 1.0, rows, dtype=np.float32)[:, None]

    def dark(self):
        return np.full(self.shape, 100, np.float32)

    def flat(self):
        return np.full(self.shape, 20100, np.float32)

    def projection(self, angle):
        i = int(np.argmin(np.abs(self._angles - angle)))
        return 100 + 20000 * np.exp(-self._scale * self._sino[i].astype(np.float32))

    def metadata(self):
        return {"sample_name": "stacked phantom", "source": "benchmark"}


def record(n: int, projections: int, directory: str) -> list[tuple[str, dict]]:
    from bluesky import RunEngine

    from tomobluesky.devices import make_sim_beamline
    from tomobluesky.plans import scan_angles, tomo_scan

    docs: list = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    source = LightPhantomSource(n, n, scan_angles(0, projections))
    RE(tomo_scan(*make_sim_beamline(source, directory, dtype="uint16"), num_projections=projections,
                 num_darks=4, num_flats=4))
    return docs


def paced(docs) -> list[tuple[int | None, str, dict]]:
    """(projection seq or None, name, doc): a projection's seq on the last document that completes it
    (its event, after its StreamDatum), where the pacing waits; the stop left out."""
    primary = {d["uid"] for name, d in docs if name == "descriptor" and d.get("name") == "primary"}
    out = []
    for name, doc in docs:
        if name == "stop":
            continue
        seq = doc["seq_num"] if name == "event" and doc["descriptor"] in primary else None
        out.append((seq, name, doc))
    return out


class LagSink:
    """Records, for every preview, when its write returned and the newest projection folded into it."""

    def __init__(self, inner, newest):
        self.inner, self.newest, self.previews = inner, newest, []

    def write_preview(self, uid, slices, md):
        self.inner.write_preview(uid, slices, md)
        self.previews.append((time.perf_counter(), self.newest[0], md.get("skipped", 0)))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def watcher(newest):
    """``on_start`` for the router: the newest projection folded, seen through the run's own fold."""
    def watch(run):
        fold = run._fold

        def counted(seq, frame, angle):
            before = run._folded
            fold(seq, frame, angle)
            if run._folded > before:
                newest[0] = max(newest[0], seq)
        run._fold = counted
    return watch


class ReportingSink(LagSink):
    """In the child: each preview's (time, newest projection, skipped) goes to the parent. ``perf_counter``
    is the system-wide monotonic clock on Linux, so the parent's emit times compare with it."""

    def write_preview(self, uid, slices, md):
        from tomobluesky.transport._offprocess import report

        super().write_preview(uid, slices, md)
        report(("preview", *self.previews[-1]))


def lag_router_in_child(tiled_uri: str, key_file: str, volume_dir: str):
    """OffProcess factory: the live router as ``demo.live_router_in_child`` builds it (its own Tiled client,
    the child's queue as its backlog), its previews reported to the parent."""
    from tomobluesky.catalog import TiledSink
    from tomobluesky.demo import _tiled_client
    from tomobluesky.live import live_reconstruction_router
    from tomobluesky.schema import ReconSettings
    from tomobluesky.transport._offprocess import child_backlog

    from tomobluesky.live import _kernels

    _kernels.warm_up()  # as demo.live_router_in_child: once a child, not in its first scan
    newest = [-1]
    sink = ReportingSink(TiledSink(_tiled_client(tiled_uri, key_file), volume_dir=volume_dir), newest)
    return live_reconstruction_router(sink, ReconSettings(), backlog=child_backlog, on_start=watcher(newest))


def in_thread(sink_inner):
    """The live path behind ``OffThread`` in this process (``demo.live_off_thread``)."""
    from tomobluesky.demo import live_off_thread
    from tomobluesky.schema import ReconSettings

    newest = [-1]
    sink = LagSink(sink_inner, newest)
    return live_off_thread(sink, ReconSettings(), on_start=watcher(newest)), sink.previews


def in_child(server):
    """The live path in an ``OffProcess`` child at nice 0, as the demo runs it, into ``server``."""
    from tomobluesky.catalog import ensure_layout
    from tomobluesky.transport import OffProcess

    previews: list = []
    ensure_layout(server.client())
    kwargs = dict(tiled_uri=server.uri, key_file=str(server.layout.key_file), volume_dir=str(server.layout.volumes))
    dispatcher = OffProcess(lag_router_in_child, kwargs, name="live-lag",
                            on_report=lambda m: previews.append(m[1:]) if m[0] == "preview" else None)
    if not dispatcher.wait_ready(120):  # the demo's children start with the session, long before a scan
        raise RuntimeError("the live path's child process did not start in 120 s")
    return dispatcher, previews


def replay(docs, rate: float, layout) -> dict:
    """Replay ``docs`` at ``rate`` projections/s into ``layout`` = (dispatcher, previews list)."""
    dispatcher, previews = layout
    emitted: dict[int, float] = {}
    k, t0 = 0, time.perf_counter()
    for seq, name, doc in paced(docs):
        if seq is not None:
            time.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            k += 1
        dispatcher(name, doc)
        if seq is not None:
            emitted[seq] = time.perf_counter()
    t_end = time.perf_counter()
    stats = dispatcher.stats()
    left = dispatcher.close(timeout=600)
    seqs = np.array(sorted(emitted))
    times = np.array([emitted[s] for s in seqs])
    lags, behind = [], []
    for t, seq, _ in previews:
        if seq < 0 or t > t_end:  # the first previews before any fold; after the last frame: the drain
            continue
        lags.append(t - emitted[seq])
        behind.append(int((times <= t).sum()) - int((seqs <= seq).sum()))
    lags = np.array(lags) if lags else np.array([np.nan])
    return {"frames": int(len(seqs)), "rate_asked": rate, "rate_sent": round(len(seqs) / (t_end - t0), 1),
            "previews_during_scan": len(behind), "lag_s_p50": round(float(np.median(lags)), 3),
            "lag_s_max": round(float(np.max(lags)), 3), "frames_behind_max": int(max(behind, default=0)),
            "dispatcher_max_backlog": stats["max_backlog"], "undelivered": left,
            "skipped_at_last_preview": int(previews[-1][2]) if previews else None,
            "lags_s": [round(float(v), 3) for v in lags], "frames_behind": behind}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="512:500:1500,2048:100:300",
                    help="comma-separated size:rate:projections (frames n × n at rate/s; default: %(default)s)")
    ap.add_argument("--tiled", action="store_true", help="previews into a real tiled serve (else a MemorySink)")
    ap.add_argument("--child", action="store_true",
                    help="the demo's layout: the live path in an OffProcess child, previews into a real tiled serve")
    ap.add_argument("--tiled-nice", type=int, default=0, help="the Tiled server's niceness (the demo's: 10)")
    ap.add_argument("--dir", default=None, help="where the detector files go (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from tomobluesky.live import MemorySink, _kernels

    _kernels.warm_up()  # numba's compile is a process's once, not a scan's
    results = {"load_average_at_start": os.getloadavg(), "cases": [], "tiled_nice": args.tiled_nice,
               "layout": "OffProcess child, Tiled" if args.child else "OffThread, " + ("Tiled" if args.tiled else "memory")}
    for case in args.cases.split(","):
        n, rate, projections = (float(v) if i == 1 else int(v) for i, v in enumerate(case.split(":")))
        with tempfile.TemporaryDirectory(prefix="live-lag-", dir=args.dir) as d:
            t = time.perf_counter()
            docs = record(n, projections, d)
            print(f"{n}² × {projections}: recorded in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            if args.tiled or args.child:
                from tomobluesky.catalog import TiledServer, TiledSink

                with TiledServer(os.path.join(d, "tiled"), nice=args.tiled_nice) as server:
                    layout = (in_child(server) if args.child else
                              in_thread(TiledSink(server.client(), volume_dir=server.layout.volumes)))
                    r = replay(docs, rate, layout)
            else:
                r = replay(docs, rate, in_thread(MemorySink(os.path.join(d, "volumes"))))
        r["frame"] = f"{n}x{n}"
        results["cases"].append(r)
        print(json.dumps(r), file=sys.stderr)
    results["load_average_at_end"] = os.getloadavg()
    print("| frame | rate asked / sent (frames/s) | previews | lag p50 / max (s) | frames behind at most |")
    print("|---|---|---|---|---|")
    for r in results["cases"]:
        print(f"| {r['frame']} | {r['rate_asked']:.0f} / {r['rate_sent']:.0f} | {r['previews_during_scan']} | "
              f"{r['lag_s_p50']:.3f} / {r['lag_s_max']:.3f} | {r['frames_behind_max']} |")
    print("load average at start {:.1f}, at end {:.1f}".format(results["load_average_at_start"][0],
                                                                results["load_average_at_end"][0]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
