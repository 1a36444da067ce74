"""The IPython profile's startup files, executed in order as IPython would,
against a real Tiled server they start themselves. The end station is the ophyd-async one."""

from pathlib import Path

import matplotlib
import pytest
from ophyd_async.core import StandardDetector

pytestmark = pytest.mark.system
STARTUP = Path(__file__).resolve().parents[2] / "profile_collection" / "startup"


def _start_session(monkeypatch, data_dir):
    monkeypatch.setenv("TOMOBLUESKY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TOMOBLUESKY_HEADLESS", "1")
    monkeypatch.setenv("TOMOBLUESKY_SOURCE", "phantom")
    monkeypatch.delenv("TOMOBLUESKY_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TOMOBLUESKY_TILED_URI", raising=False)
    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    for script in sorted(STARTUP.glob("*.py")):
        exec(compile(script.read_text(), str(script), "exec"), namespace)
    return namespace


def test_profile_scans_reconstructs_and_keeps_counting(monkeypatch, tmp_path):
    ns = _start_session(monkeypatch, tmp_path)
    try:
        RE = ns["RE"]
        assert isinstance(ns["camera"], StandardDetector) and ns["tomo_scan"].__name__ == "tomo_scan"
        uid, = RE(ns["tomo_scan"]([ns["camera"]], ns["rotation"], ns["shutter"], ns["sample"], num_projections=30,
                                  num_darks=2, num_flats=2))
        assert ns["wait_for_callbacks"]() == 0  # the live path and the writer work off the RunEngine's thread
        volume = ns["tiled"]["processed"][uid]
        assert volume.metadata["status"] == "complete" and volume["0"].shape == (16, 128, 128)
        assert ns["tiled"]["raw"][uid]["primary"]["camera_image"].shape[0] == 30
        # headless: the live figure went to PNGs, one per preview (every 10 projections), none twice; how many
        # depends on whether the off-thread live path kept up (a preview is skipped while documents wait)
        saved = [p.name for p in ns["live_figure"].saved]
        assert len(saved) == len(set(saved)) and set(saved) <= {f"live_{uid[:8]}_{n:05d}.png" for n in range(1, 31)}
        assert all((tmp_path / "live-png" / name).stat().st_size > 0 for name in saved)
        first_id = RE.md["scan_id"]
    finally:
        ns["tiled_server"].stop()
        # the session ends: its metadata dict is written out now, as at IPython's exit (bluesky's
        # PersistentDict finalizer, run once), not later by the garbage collector over the next session's files
        ns["RE"].md._finalizer()
    ns = _start_session(monkeypatch, tmp_path)  # a restarted IPython session
    try:
        RE = ns["RE"]
        RE(ns["tomo_fly_scan"]([ns["camera"]], ns["rotation"], ns["shutter"], ns["sample"], num_projections=20,
                               num_darks=1, num_flats=1, velocity=720))
        assert ns["wait_for_callbacks"]() == 0
        assert RE.md["scan_id"] == first_id + 1
    finally:
        ns["tiled_server"].stop()
