"""What one live preview update costs the Tiled server (issue 11).

    .venv/bin/python benchmarks/preview_cost.py [--updates 40] [--columns 256] [--rows 26] [--interval 0.5]

Starts a real ``tiled serve`` (the project's ``TiledServer``: SQLite catalogue,
scoped API keys), then does what ``LiveReconstruction`` does at each preview
through ``TiledSink``: read the viewer's control request, write the three live
slices (axial ``columns²``, two vertical ``rows × columns``) and the preview's
metadata, one update every ``--interval`` seconds. It prints, per update: the server's CPU time (its process, from
``/proc``), the wall time of the update as the sink sees it, and the requests
the server logged. The first update (which creates the nodes) is left out.

The point of the number: on a small acquisition host every CPU second the
server spends on previews is taken from the scan (docs/benchmarks.md,
*Acquisition with the live pipeline*). Run it from an older checkout
(``PYTHONPATH=<checkout>``) to compare layouts in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its finished children, from /proc (clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(updates: int, columns: int, rows: int, interval: float) -> dict:
    from tomobluesky.catalog import TiledServer

    rng = np.random.default_rng(0)
    slices = {"axial": rng.random((columns, columns), dtype=np.float32),
              "vertical_x": rng.random((rows, columns), dtype=np.float32),
              "vertical_y": rng.random((rows, columns), dtype=np.float32)}
    with tempfile.TemporaryDirectory() as tmp, TiledServer(tmp) as server:
        sink = server.sink()
        sink.write_preview("scan", slices, {"projections": 0})  # creates the nodes: not timed
        log = server.layout.log_file
        logged = len(log.read_text().splitlines())
        cpu, wall = [], []
        for i in range(1, updates + 1):
            c0, t0 = cpu_seconds(server.pid), time.perf_counter()
            sink.live_request("scan")
            sink.write_preview("scan", slices, {"projections": 10 * i, "lag_s": 0.01})
            wall.append(time.perf_counter() - t0)
            time.sleep(max(0.05, interval - (time.perf_counter() - t0)))  # paced as the live path paces them
            cpu.append(cpu_seconds(server.pid) - c0)
        requests = len(log.read_text().splitlines()) - logged
    return {"updates": updates, "columns": columns, "rows": rows, "interval_s": interval,
            "server_cpu_ms_per_update": round(1000 * sum(cpu) / updates, 1),
            "server_cpu_ms_median": round(1000 * statistics.median(cpu), 1),
            "wall_ms_median": round(1000 * statistics.median(wall), 1),
            "requests_per_update": round(requests / updates, 2),
            "load_average": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--columns", type=int, default=256, help="live width (LIVE_MAX_COLUMNS is 256)")
    parser.add_argument("--rows", type=int, default=26, help="live rows (the tooth's 128 rows binned by 5)")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds from one update's start to the next (recon.preview_interval_s is 0.5)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.updates, args.columns, args.rows, args.interval)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
