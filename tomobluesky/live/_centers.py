"""The last rotation axis found per beamline set-up, kept in a small JSON file.

A beamline's axis moves little between scans of the same set-up (camera,
rotation stage, detector size, pixel size), so the last centre a finished
volume used is a good first guess for the next scan's live slices, better
than the detector's middle. One file, written atomically, read at each scan's
start; a set-up never seen before simply has no entry.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path


def setup_key(start_doc: dict) -> str:
    """What identifies a set-up whose axis stays put: beamline, camera, rotation stage, detector and pixel size."""
    parts = [start_doc.get("beamline_id"), start_doc.get("camera"), start_doc.get("rotation"),
             list(start_doc.get("detector_shape") or []), start_doc.get("pixel_size")]
    return json.dumps(parts)


class CenterMemory:
    """``recall(key)`` the last centre stored for a set-up, ``remember(key, center)`` a new one, in ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _load(self) -> dict:
        if not self.path.exists():
            return {}
        with open(self.path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"centre memory {self.path} does not hold a JSON object")
        return data

    def recall(self, key: str) -> float | None:
        entry = self._load().get(key)
        if entry is None:
            return None
        center = entry.get("center") if isinstance(entry, dict) else None
        if not isinstance(center, (int, float)) or not math.isfinite(center):
            raise ValueError(f"centre memory {self.path}: entry {key} has no finite centre: {entry!r}")
        return float(center)

    def remember(self, key: str, center: float, **info):
        if not math.isfinite(center):
            raise ValueError(f"refusing to remember a centre that is not a finite number: {center}")
        data = self._load()
        data[key] = {"center": float(center), "time": time.time(), **info}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".centers-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # readers see the old file or the new one, never half
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)
