"""Scans for the viewer's tests, written straight into a real Tiled server: a finished
multiscale volume (as the stop path writes it, registered as the sink registers it) and
live preview slices (as the live reconstruction writes them). No scan runs, so the
tests are fast; what the viewer reads is the same catalogue layout a scan leaves."""

from __future__ import annotations

import time
import uuid

import numpy as np

from tomobluesky.catalog import TiledSink, ensure_layout
from tomobluesky.store import MultiscaleWriter, open_multiscale


def volume_scan(server, shape, *, min_size: int, seed: int = 0, sample: str = "test volume",
                uid: str | None = None) -> tuple[str, list]:
    """A complete volume of ``shape`` with levels down to ``min_size``; returns (uid, levels as NumPy)."""
    uid = uid or str(uuid.uuid4())
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    # smooth structure (so planes and profiles differ in a way a mix-up of axes shows) plus noise
    volume = (np.sin(z / 3.0) + np.cos(y / 7.0) * 2 + x / shape[2] * 3 + rng.normal(0, 0.25, shape)).astype(np.float32)
    sink = TiledSink(server.client(), volume_dir=server.layout.volumes)
    path = sink.volume_path(uid)
    writer = MultiscaleWriter(path, shape, min_size=min_size)
    writer.write_slab(0, volume)
    sink.register_volume(uid, path, {"sample_name": sample, "center": 12.5})
    return uid, [np.asarray(a[...]) for a in open_multiscale(path)]


def live_scan(server, *, rows: int = 12, columns: int = 20, binning: int = 1, metadata=None) -> tuple[str, dict]:
    """Live previews of a scan still running (no volume yet): returns (uid, the slices written)."""
    uid = str(uuid.uuid4())
    n = columns // binning
    rng = np.random.default_rng(1)
    slices = {"axial": rng.random((n, n), dtype=np.float32),
              "vertical_x": rng.random((rows // binning, n), dtype=np.float32),
              "vertical_y": rng.random((rows // binning, n), dtype=np.float32)}
    md = {"scan_uid": uid, "row": rows // 2, "binning": binning, "projections": 10, "angle_coverage_deg": 45.0,
          "center": (columns - 1) / 2, "center_source": "detector middle", "lag_s": 0.01, **(metadata or {})}
    TiledSink(server.client()).write_preview(uid, slices, md)
    return uid, slices


def raw_scan(server, uid: str, sample: str) -> None:
    """The raw run's node as the scan list reads it: a container with the start document."""
    start = {"uid": uid, "scan_id": 7, "sample_name": sample, "time": time.time(), "plan_name": "tomo_scan"}
    ensure_layout(server.client())["raw"].create_container(uid, metadata={"start": start})
