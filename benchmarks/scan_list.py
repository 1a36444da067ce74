"""What the viewer's scan list and its live-event stream cost the Tiled server (issue 11).

    .venv/bin/python benchmarks/scan_list.py [--scans 50] [--repeats 5] [--stream-s 10]

Starts a real ``tiled serve`` and fills ``raw`` with ``--scans`` runs (their
start documents only, as the list reads them), half of them with a failed
volume and a live preview. Then, through the viewer's app (in this process, with
the reader's key): ``GET /api/scans`` ``--repeats`` times (the page asks every
3 s while it is open), and one live-event stream of a scan still acquiring for
``--stream-s`` seconds. Printed: wall time and the server's CPU per list, and the
requests the server logged per list and per second of stream. Run it from an
older checkout (``PYTHONPATH=<checkout>``) to compare in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preview_cost import cpu_seconds  # noqa: E402


def fill(server, scans: int) -> str:
    """``scans`` raw runs, every other one with a failed volume and a live preview; returns a live one's uid."""
    from tomobluesky.catalog import TiledSink, ensure_layout

    client = ensure_layout(server.client())
    sink = TiledSink(client, volume_dir=server.layout.volumes)
    live_uid = None
    for i in range(scans):
        uid = str(uuid.uuid4())
        start = {"uid": uid, "scan_id": i, "sample_name": f"sample {i}", "time": time.time(), "plan_name": "tomo_scan"}
        client["raw"].create_container(uid, metadata={"start": start})
        if i % 2:
            sink.record_failure(uid, "no flats", {"scan_uid": uid})
            sink.write_preview(uid, {"axial": np.ones((8, 8), np.float32)}, {"projections": 2})
        else:
            live_uid = uid
    sink.write_preview(live_uid, {"axial": np.ones((8, 8), np.float32)}, {"projections": 2})
    return live_uid


def measure(scans: int, repeats: int, stream_s: float) -> dict:
    from starlette.testclient import TestClient

    from tomobluesky.catalog import TiledServer
    from tomobluesky.viewer import create_app

    with tempfile.TemporaryDirectory() as tmp, TiledServer(tmp) as server:
        live_uid = fill(server, scans)
        http = TestClient(create_app(server.uri, max_stream_s=stream_s))
        headers = {"Authorization": f"Bearer {server.reader_key}"}
        log = server.layout.log_file

        def logged():
            return len(log.read_text().splitlines())

        assert len(http.get("/api/scans", headers=headers).json()) == min(scans, 50)  # the client is made
        walls, cpus, requests = [], [], []
        for _ in range(repeats):
            n0, c0, t0 = logged(), cpu_seconds(server.pid), time.perf_counter()
            http.get("/api/scans", headers=headers)
            walls.append(time.perf_counter() - t0)
            time.sleep(0.3)  # the server's last access lines and CPU of this request
            cpus.append(cpu_seconds(server.pid) - c0)
            requests.append(logged() - n0)
        n0, c0 = logged(), cpu_seconds(server.pid)
        http.get(f"/api/scans/{live_uid}/live/events", headers=headers)  # ends after stream_s
        time.sleep(0.3)
        stream = {"requests_per_s": round((logged() - n0) / stream_s, 2),
                  "server_cpu_share_of_a_core": round((cpu_seconds(server.pid) - c0) / stream_s, 3)}
    return {"scans": scans, "list_wall_s_median": round(statistics.median(walls), 3),
            "list_server_cpu_s_median": round(statistics.median(cpus), 3),
            "list_requests": requests[-1], "live_event_stream": stream, "load_average": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=50, help="raw runs in the catalogue (the list shows 50)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-s", type=float, default=10.0, help="how long the live-event stream is read")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.scans, args.repeats, args.stream_s), indent=2))


if __name__ == "__main__":
    main()
