"""The IPython live figure draws the newest preview only, on the GUI's thread, never a backlog (issue 11)."""

from __future__ import annotations

import threading
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tomobluesky.devices import PhantomSource, make_sim_beamline  # noqa: E402
from tomobluesky.live import MemorySink, SliceFigureSink, live_reconstruction_router  # noqa: E402
from tomobluesky.live._figure import PANELS  # noqa: E402
from tomobluesky.plans import tomo_scan  # noqa: E402
from tomobluesky.schema import ReconSettings  # noqa: E402
from tomobluesky.transport import OffThread  # noqa: E402


class Recorder(MemorySink):
    """The sink behind the figure: a memory sink that also lists what was passed on."""

    def __init__(self, *args):
        super().__init__(*args)
        self.passed, self.completed, self.failed = [], [], []

    def write_preview(self, scan_uid, slices, metadata):
        self.passed.append(metadata["projections"])

    def complete_volume(self, scan_uid, store, metadata):
        self.completed.append(scan_uid)
        if Path(store).exists():
            super().complete_volume(scan_uid, store, metadata)

    def record_failure(self, scan_uid, reason, metadata):
        self.failed.append(reason)
        super().record_failure(scan_uid, reason, metadata)


def preview(i, shape=(6, 5)):
    slices = {name: np.full(shape, float(i), np.float32) + np.arange(shape[1], dtype=np.float32) for name in PANELS}
    return slices, {"projections": i, "center": 2.0, "angle_coverage_deg": float(i)}


def shown(figure, name="axial"):
    return np.asarray(figure._artists[name].get_array())


@pytest.fixture
def figure(tmp_path):
    import matplotlib.pyplot as plt

    inner = Recorder(tmp_path / "volumes")
    fig = SliceFigureSink(inner, interactive=True, min_interval=3600)
    yield fig, inner
    plt.close("all")


def test_previews_from_another_thread_wait_in_one_slot_and_only_the_newest_is_drawn(figure):
    fig, inner = figure

    def live_path():
        for i in range(1, 51):
            fig.write_preview("scan-a", *preview(i))

    worker = threading.Thread(target=live_path)
    worker.start()
    worker.join()
    assert fig.draws == 0  # nothing is drawn off the GUI's thread
    assert inner.passed == list(range(1, 51))  # every preview still reaches the catalogue
    assert fig.superseded == 49

    assert fig.draw_latest() is True  # what the GUI timer does
    assert fig.draws == 1 and fig.drawn[1]["projections"] == 50
    for name in PANELS:
        np.testing.assert_array_equal(shown(fig, name), preview(50)[0][name])
    assert fig.draw_latest() is False and fig.draws == 1  # nothing newer: no redraw


def test_a_waiting_preview_is_a_copy_the_live_slices_change_in_place(figure):
    fig, _ = figure
    slices, metadata = preview(3)
    fig.write_preview("scan-a", slices, metadata)  # on the main thread: drawn at once (first draw)
    later, metadata = preview(4)
    fig.write_preview("scan-a", later, metadata)  # within min_interval: waits
    later["axial"][:] = -1.0  # the live path folds the next frame into the same arrays
    assert fig.draws == 1 and fig.draw_latest()
    np.testing.assert_array_equal(shown(fig), preview(4)[0]["axial"])


def test_the_last_preview_is_drawn_when_the_volume_completes_or_fails(figure):
    fig, inner = figure
    for i in (1, 2, 3):
        fig.write_preview("scan-a", *preview(i))
    assert fig.draws == 1 and fig.drawn[1]["projections"] == 1  # the rest came within min_interval
    fig.complete_volume("scan-a", "store.zarr", {})
    assert fig.draws == 2 and fig.drawn[1]["projections"] == 3 and inner.completed == ["scan-a"]
    fig.write_preview("scan-b", *preview(7))
    fig.record_failure("scan-b", "darks missing", {})
    assert fig.drawn == ("scan-b", preview(7)[1]) and inner.failed == ["darks missing"]


def test_the_gui_timer_is_set_to_the_redraw_interval():
    import matplotlib.pyplot as plt

    fig = SliceFigureSink(interactive=True, min_interval=0.2)
    try:
        assert fig._timer is not None and fig._timer.interval == 200
        assert fig.draw_latest in [cb[0] for cb in fig._timer.callbacks]
    finally:
        plt.close("all")


def test_behind_a_dispatcher_a_fast_scan_leaves_one_preview_to_draw(RE, tmp_path, figure):
    fig, inner = figure
    source = PhantomSource(n_slices=4, n_columns=32, noise=False)
    dispatcher = OffThread(live_reconstruction_router(fig, ReconSettings(preview_interval_s=0, preview_every=2)), name="live")
    RE.subscribe(dispatcher)
    RE(tomo_scan(*make_sim_beamline(source, tmp_path), num_projections=30, num_darks=1, num_flats=1))
    assert dispatcher.flush(60) == 0
    assert inner.passed == list(range(2, 31, 2))  # the catalogue still got every preview
    assert fig.draws == 0 and fig.superseded == len(inner.passed) - 1
    assert fig.draw_latest() and fig.drawn[1]["projections"] == 30
    assert len(inner.volumes) == 1 and inner.completed == list(inner.volumes)  # the volume went through the figure
    dispatcher.close()
