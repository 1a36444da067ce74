"""The live path in a real RunEngine: the axis 40 columns off the middle, skipping when behind, the
viewer's requests and the centre remembered per set-up."""

import json
import math

import numpy as np
import pytest

from tomobluesky.devices import make_sim_beamline
from tomobluesky.live import LiveReconstruction, MemorySink, live_reconstruction_router
from tomobluesky.live._centers import CenterMemory
from tomobluesky.plans import tomo_scan
from tomobluesky.recon import ssim_in_circle
from tomobluesky.recon.testing import project_disk
from tomobluesky.schema import ReconSettings

N, OFFSET = 160, 40.0


class DisksSource:
    """Frames of disks (cylinders through 4 detector rows) that fit on a detector of N columns whose
    rotation axis is OFFSET columns right of its middle: exact, pixel-averaged line integrals
    (``project_disk``), each row's attenuation a little different, nothing cut off at the edges."""

    shape = (4, N)
    center = (N - 1) / 2 + OFFSET
    disks = [(0.02, 30.0, 0.0, 0.0), (0.05, 7.0, 14.0, -8.0), (0.03, 5.0, -12.0, 15.0)]  # mu, radius, x0, y0
    rows = np.array([0.8, 0.9, 1.0, 1.1], np.float32)[:, None]

    def dark(self):
        return np.full(self.shape, 100, np.float32)

    def flat(self):
        return np.full(self.shape, 20100, np.float32)

    def projection(self, angle):
        theta = [np.radians(angle)]
        p = sum(project_disk(N, theta, self.center, mu=mu, radius=r, x0=x0, y0=y0)[0] for mu, r, x0, y0 in self.disks)
        return (100 + 20000 * np.exp(-self.rows * p[None])).astype(np.float32)

    def truth(self, row):
        """The attenuation of detector row ``row`` on the reconstruction grid (N × N, axis in the middle)."""
        coords = np.arange(N) - (N - 1) / 2
        x, y = np.meshgrid(coords, -coords)
        image = np.zeros((N, N), np.float32)
        for mu, r, x0, y0 in self.disks:
            image[(x - x0) ** 2 + (y - y0) ** 2 <= r**2] += mu
        return image * self.rows[row, 0]


def _source():
    return DisksSource()


def _scan(RE, tmp_path, sink, *, settings=None, md=None, num_projections=180, **router_kwargs):
    runs = []
    RE.subscribe(live_reconstruction_router(sink, settings or ReconSettings(preview_interval_s=0, preview_every=10),
                                            on_start=runs.append, **router_kwargs))
    RE(tomo_scan(*make_sim_beamline(_source(), tmp_path), num_projections=num_projections, num_darks=2,
                 num_flats=2, md=md))
    run, = runs
    return run


@pytest.mark.parametrize("md, first_source", [({"center_hint": _source().center}, "hint"), (None, "middle")])
def test_live_axial_slice_at_the_end_matches_the_final_volume_with_the_axis_40_columns_off(RE, tmp_path, md,
                                                                                           first_source):
    """Hinted, the slices use the axis from the first frame; not hinted, they start at the middle (40 columns
    wrong) and the axis found from the frames once they span a half turn redraws the axial slice."""
    sink = MemorySink()
    run = _scan(RE, tmp_path, sink, md=md)
    (uid, (volume, meta)), = sink.volumes.items()
    previews = sink.previews[uid]
    assert previews[0][1]["center_source"] == first_source
    images, last = previews[-1]
    assert last["center_source"] == "frames" and last["projections"] == 180 and last["skipped"] == 0
    assert abs(last["center"] - _source().center) <= 1.0 and abs(meta["center"] - _source().center) <= 1.0
    row = last["row"]
    # measured 0.995 (hint) and 0.995 (middle, redrawn from the stored rows); 40 columns wrong: 0.41
    assert ssim_in_circle(images["axial"], volume[row]) >= 0.9
    # and against the object itself: the big disk's attenuation, inside it, away from the small ones
    coords = np.arange(N) - (N - 1) / 2
    x, y = np.meshgrid(coords, -coords)
    inside = (x**2 + y**2 <= 20**2) & ((x - 14) ** 2 + (y + 8) ** 2 > 10**2) & ((x + 12) ** 2 + (y - 15) ** 2 > 8**2)
    mu = 0.02 * DisksSource.rows[row, 0]
    assert images["axial"][inside].mean() == pytest.approx(mu, rel=0.02)
    assert run.slices.center == pytest.approx(last["center"])
    if first_source == "middle":
        wrong = previews[-2][0]["axial"]  # after 170 views the axis is still the middle
        assert previews[-2][1]["center_source"] == "middle"
        assert ssim_in_circle(wrong, volume[row]) < 0.6


def test_behind_the_newest_frames_are_folded_first_and_the_rest_counted_as_skipped(RE, tmp_path, monkeypatch):
    """``backlog()`` says documents wait for 50 of 60 projections' datums: those frames are only recorded.
    Once caught up, each document folds its own frame and a few skipped ones, newest first; what is never
    folded is reported as skipped, and the volume is reconstructed from every frame of the file."""
    runs = []
    monkeypatch.setattr(LiveReconstruction, "BEHIND_REFRESH_S", math.inf)  # no refresh while behind here

    def backlog():  # behind until the 55th projection's frame is recorded (the one in hand included)
        return int(len(runs[0].documents.streams["primary"].locations) < 55)

    sink = MemorySink()
    RE.subscribe(live_reconstruction_router(sink, ReconSettings(preview_interval_s=0, preview_every=10), on_start=runs.append,
                                            backlog=backlog))
    RE(tomo_scan(*make_sim_beamline(_source(), tmp_path), num_projections=60, num_darks=2, num_flats=2))
    run, = runs
    (uid, (volume, meta)), = sink.volumes.items()
    planned = np.asarray(run.meta.theta)
    folded = sorted(run.slices.angles_deg)
    skipped = 60 - len(folded)
    assert 6 < len(folded) < 60 and run._folded == len(folded)
    # newest first: the folded views are the last ones of the scan, with no gap
    np.testing.assert_allclose(folded, planned[-len(folded):])
    _, last = sink.previews[uid][-1]
    assert last["skipped"] == skipped and last["folded"] == len(folded) and last["projections"] == 60
    assert [p[1]["projections"] for p in sink.previews[uid]] == [60]  # no previews while behind
    assert meta["num_projections"] == 60 and meta["live_skipped"] == skipped
    # every frame, read from the file: the same volume as a scan whose live path never fell behind
    sink = MemorySink()
    _scan(RE, tmp_path, sink, num_projections=60)
    (_, (caught_up, _)), = sink.volumes.items()
    np.testing.assert_allclose(volume, caught_up, rtol=1e-6, atol=1e-7)


def test_without_backlog_every_frame_is_folded(RE, tmp_path):
    sink = MemorySink()
    run = _scan(RE, tmp_path, sink, num_projections=30)
    assert run._folded == 30 and all(p[1]["skipped"] == 0 for p in sink.previews[run.scan_uid])


class RequestingSink(MemorySink):
    """A sink whose viewer asks for a row and a centre once ``ask`` is set (what the viewer's channel does)."""

    def __init__(self):
        super().__init__()
        self.ask = None

    def write_preview(self, scan_uid, slices, metadata):
        super().write_preview(scan_uid, slices, metadata)
        if metadata["projections"] == 60:
            self.ask = {"row": 3, "center": _source().center + 6}

    def live_request(self, scan_uid):
        return self.ask


def test_the_viewers_request_moves_the_row_and_sets_the_centre_which_then_stays(RE, tmp_path):
    sink = RequestingSink()
    run = _scan(RE, tmp_path, sink, num_projections=120)
    previews = [p[1] for p in sink.previews[run.scan_uid]]
    asked = _source().center + 6
    before, after = previews[5], previews[6]  # the request is read before the preview at 70 projections
    assert before["center_source"] == "middle" and before["row"] == 2
    assert after["center_source"] == "user" and after["center"] == pytest.approx(asked) and after["row"] == 3
    # applied once: the same request again neither restarts the slices nor lets the frames' estimate in
    last = previews[-1]
    assert last["center_source"] == "user" and last["center"] == pytest.approx(asked)
    assert last["vertical_views"] == 120 - 70 and last["request_errors"] == []
    assert run.slices.row == 3 and len(run.slices._axial_rows) == 120 - 70


def test_a_bad_request_is_reported_and_the_scan_goes_on(RE, tmp_path):
    sink = RequestingSink()
    sink.ask = {"center": 10 * N}
    run = _scan(RE, tmp_path, sink, num_projections=20)
    last = sink.previews[run.scan_uid][-1][1]
    assert "not a detector column" in last["request_errors"][-1] and last["center_source"] != "user"
    assert last["center"] < N
    sink.ask = {"colour": "red"}
    run = _scan(RE, tmp_path, sink, num_projections=20)
    assert "'row' and/or 'center'" in sink.previews[run.scan_uid][-1][1]["request_errors"][-1]
    assert len(sink.volumes) == 2


def test_set_center_before_and_during_the_scan(RE, tmp_path):
    sink = MemorySink()
    runs = []
    asked = _source().center - 3

    def on_start(run):
        run.set_center(asked)  # before any frame: the slices start with it
        runs.append(run)

    RE.subscribe(live_reconstruction_router(sink, ReconSettings(preview_interval_s=0, preview_every=10), on_start=on_start))
    RE(tomo_scan(*make_sim_beamline(_source(), tmp_path), num_projections=40, num_darks=1, num_flats=1))
    previews = [p[1] for p in sink.previews[runs[0].scan_uid]]
    assert all(p["center_source"] == "user" and p["center"] == pytest.approx(asked) for p in previews)
    with pytest.raises(ValueError, match="not a detector column"):
        runs[0].set_center(float("nan"))


def test_the_centre_found_for_a_set_up_starts_its_next_scan(RE, tmp_path):
    memory = tmp_path / "live-centers.json"
    sink = MemorySink()
    _scan(RE, tmp_path, sink, num_projections=60, center_memory=memory)
    (first, meta), = [(uid, v[1]) for uid, v in sink.volumes.items()]
    stored, = json.loads(memory.read_text()).values()
    assert stored["center"] == meta["center"] and stored["scan_uid"] == first
    # the next scan of the same set-up starts from it (before any frame could tell)
    sink = MemorySink()
    run = _scan(RE, tmp_path, sink, num_projections=60, center_memory=CenterMemory(memory))
    first_preview = sink.previews[run.scan_uid][0][1]
    assert first_preview["center_source"] == "last" and first_preview["center"] == pytest.approx(meta["center"])
    # a damaged memory file costs the guess, not the scan
    memory.write_text("[1, 2]")
    sink = MemorySink()
    run = _scan(RE, tmp_path, sink, num_projections=20, center_memory=memory)
    assert sink.previews[run.scan_uid][0][1]["center_source"] == "middle"
    assert any("centre memory" in e for e in run.preview_errors) and len(sink.volumes) == 1


def test_behind_for_long_the_preview_still_shows_the_newest_frame(RE, tmp_path, monkeypatch):
    """Always behind (a live path slower than the detector for the whole scan): every BEHIND_REFRESH_S the
    newest frames are folded and a preview written, so the preview never lags by more than that."""
    runs = []
    monkeypatch.setattr(LiveReconstruction, "BEHIND_REFRESH_S", 0.0)  # every projection counts as stale
    sink = MemorySink()
    RE.subscribe(live_reconstruction_router(sink, ReconSettings(preview_interval_s=0, preview_every=1000), on_start=runs.append,
                                            backlog=lambda: 1))
    RE(tomo_scan(*make_sim_beamline(_source(), tmp_path), num_projections=30, num_darks=2, num_flats=2))
    run, = runs
    (uid, _), = sink.volumes.items()
    shown = [meta["projections"] for _, meta in sink.previews[uid]]
    assert len(shown) >= 25 and shown == sorted(shown) and shown[-1] == 30  # preview_every alone: none
    np.testing.assert_allclose(max(run.slices.angles_deg), max(run.meta.theta))  # the newest view is folded
