"""Plans are checked by the documents they emit, on the ophyd-async end station (the profile's) and on
the older ophyd one (which callers of ``tomobluesky.devices.make_sim_beamline`` still get)."""

from collections import Counter

import h5py
import numpy as np
import pytest

from bluesky import plan_stubs as bps

from tomobluesky.devices import PROJECTION, ReplaySource, SourceError, make_sim_beamline, oa
from tomobluesky.live import read_frames
from tomobluesky.plans import PlanArgumentError, check_frame_counts, scan_angles, tomo_fly_scan, tomo_scan

BEAMLINES = {"ophyd-async": oa.make_sim_beamline, "ophyd": make_sim_beamline}


@pytest.fixture(params=list(BEAMLINES))
def beamline(request, tooth_path, tmp_path):
    return BEAMLINES[request.param](ReplaySource(tooth_path), tmp_path)


def _read(RE, obj):
    """The value of ``obj`` read through the RunEngine (ophyd-async signals have no synchronous get)."""
    values = []

    def plan():
        values.append((yield from bps.rd(obj)))

    RE(plan())
    return values[0]


def _by_stream(documents):
    names = {d["uid"]: d["name"] for n, d in documents if n == "descriptor"}
    counts = Counter()
    for n, d in documents:
        if n == "stream_datum":
            counts[names[d["descriptor"]]] += d["indices"]["stop"] - d["indices"]["start"]
    return counts


def test_step_scan_emits_dark_flat_primary_streams(RE, documents, beamline):
    camera, *stages = beamline
    RE(tomo_scan([camera], *stages, num_projections=30, num_darks=4, num_flats=5))
    names = Counter(n for n, _ in documents)
    assert names["start"] == names["stop"] == 1
    descriptors = [d["name"] for n, d in documents if n == "descriptor"]
    assert descriptors == ["dark", "flat", "primary"]
    assert _by_stream(documents) == {"dark": 4, "flat": 5, "primary": 30}
    stop = documents[-1][1]
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"dark": 4, "flat": 5, "primary": 30}


def test_start_document_carries_what_reconstruction_needs(RE, documents, beamline):
    pipeline = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"},
                {"step": "segment", "params": {"sigma": 1.5}}]
    RE(tomo_scan(*beamline, num_projections=12, md={"sample_name": "molar", "proposal": "p1",
                                                    "pipeline": pipeline}))
    start = documents[0][1]
    assert start["pipeline"] == pipeline
    assert start["theta"] == pytest.approx(list(np.linspace(0, 180, 12, endpoint=False)))
    assert start["theta_units"] == "deg"
    assert start["detector_shape"] == [2, 640]
    assert start["num_projections"] == 12 and start["num_darks"] == 10 and start["num_flats"] == 10
    assert start["sample_name"] == "molar" and start["proposal"] == "p1"
    assert start["plan_name"] == "tomo_scan" and start["scan_type"] == "step"
    assert start["detectors"] == ["camera"] and start["motors"] == ["rotation"]
    assert "UChicago Argonne" in start["data_attribution"]


def test_pixels_stay_out_of_documents_and_frames_match_the_replayed_file(RE, documents, beamline, tooth_path):
    RE(tomo_scan(*beamline, num_projections=181, num_darks=2, num_flats=2))
    for name, doc in documents:
        if name == "event":
            assert "camera_image" not in doc["data"]
    resources = {d["uid"]: d for n, d in documents if n == "stream_resource"}
    primary = next(d["uid"] for n, d in documents if n == "descriptor" and d["name"] == "primary")
    datums = [d for n, d in documents if n == "stream_datum" and d["descriptor"] == primary]
    frames = np.concatenate([read_frames(resources[d["stream_resource"]], d["indices"]) for d in datums])
    with h5py.File(tooth_path) as f:
        original = f["/exchange/data"][:]
    np.testing.assert_array_equal(frames, original)  # same angles as the file: every projection served once
    events = [d for n, d in documents if n == "event" and d["descriptor"] == primary]
    angles = [e["data"]["rotation"] for e in events]
    assert angles == pytest.approx(list(np.linspace(0, 180, 181, endpoint=False)))


def test_detector_file_is_a_data_exchange_file(RE, beamline):
    camera = beamline[0]
    RE(tomo_scan(*beamline, num_projections=10, num_darks=3, num_flats=4))
    with h5py.File(camera.last_file) as f:
        assert f["/exchange/data"].shape == (10, 2, 640)
        assert f["/exchange/data_white"].shape == (4, 2, 640)
        assert f["/exchange/data_dark"].shape == (3, 2, 640)
        assert f["/exchange/theta"].attrs["units"] == "degrees"
        # darks are dark: far below the flats
        assert f["/exchange/data_dark"][:].mean() < 0.2 * f["/exchange/data_white"][:].mean()


def test_fly_scan_records_angles_in_the_detector_file(RE, documents, beamline):
    RE(tomo_fly_scan(*beamline, num_projections=60, velocity=720.0, num_darks=2, num_flats=2))
    assert documents[-1][1]["exit_status"] == "success"
    assert _by_stream(documents)["primary"] == 60 * 2  # image and angle datums
    resources = {d["uid"]: d for n, d in documents if n == "stream_resource"}
    theta_res = [r for r in resources.values() if r["data_key"] == "camera_theta"]
    assert len(theta_res) == 1
    theta = read_frames(theta_res[0], {"start": 0, "stop": 60})
    np.testing.assert_allclose(theta, np.linspace(0, 180, 60, endpoint=False))
    assert documents[0][1]["plan_args"]["velocity"] == 720.0
    assert documents[0][1]["plan_name"] == "tomo_fly_scan"


@pytest.mark.parametrize("kwargs, message", [
    ({"num_projections": 0}, "num_projections must be an integer in 2..100000, not 0"),
    ({"num_projections": 1}, "num_projections"),
    ({"num_projections": 2_000_000}, "num_projections must be an integer in 2..100000, not 2000000"),
    ({"num_projections": 10.5}, "num_projections"),
    ({"num_projections": None}, "num_projections"),
    ({"angular_range": 90}, "angular_range"),
    ({"num_darks": 0}, "num_darks"),
    ({"num_darks": 5000}, "num_darks must be an integer in 1..1000"),
    ({"num_flats": -1}, "num_flats"),
    ({"num_flats": 1001}, "num_flats"),
    ({"start": 30.0}, "outside what the frame source covers"),
    ({"recon": {"algorithm": "bogus"}}, "unknown algorithm 'bogus'"),
    ({"recon": {"center": float("nan")}}, "(?s)center.*finite number"),
    ({"recon": {"center": float("inf")}}, "(?s)center.*finite number"),
    ({"md": {"pipeline": [{"step": "reconstruct"}, {"step": "segmnt"}]}}, "pipeline entry 2: unknown step 'segmnt'"),
    ({"md": {"pipeline": [{"step": "segment"}]}}, "exactly one step that turns sinograms into a volume"),
])
@pytest.mark.parametrize("plan", [tomo_scan, tomo_fly_scan])
@pytest.mark.timeout(60)  # without the bound, 2,000,000 projections would run, not fail
def test_invalid_arguments_are_refused_before_the_run(RE, documents, beamline, plan, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RE(plan(*beamline, **kwargs))
    assert not any(n == "start" for n, _ in documents)
    assert RE.state == "idle"
    assert beamline[0].last_file is None  # the camera never staged: no detector file


@pytest.mark.parametrize("plan", [tomo_scan, tomo_fly_scan])
def test_a_scan_past_the_stages_soft_limits_is_refused_before_the_run(RE, documents, beamline, plan):
    rotation = beamline[1]
    RE(bps.mv(rotation.high_limit, 90.0))  # the scan's 0..180 deg do not fit
    with pytest.raises(PlanArgumentError, match=r"outside the soft limits of rotation \(-720.00..90.00 deg\)"):
        RE(plan(*beamline, num_projections=10, velocity=720.0) if plan is tomo_fly_scan
           else plan(*beamline, num_projections=10))
    assert not documents and beamline[0].last_file is None and _read(RE, rotation) == 0.0
    RE(bps.mv(rotation.high_limit, 180.0))  # the limit is inclusive: a scan ending on it runs
    RE(plan(*beamline, num_projections=10, velocity=720.0) if plan is tomo_fly_scan
       else plan(*beamline, num_projections=10))
    assert documents[-1][1]["exit_status"] == "success"


def test_frame_counts_at_the_bounds_are_accepted():
    check_frame_counts(2, 1, 1)
    check_frame_counts(100_000, 1000, 1000)
    check_frame_counts(180.0)  # a whole number given as a float is still a count


def test_fly_scan_needs_positive_velocity(RE, beamline):
    with pytest.raises(PlanArgumentError, match="velocity"):
        RE(tomo_fly_scan(*beamline, velocity=0))


def test_360_degree_angles():
    angles = scan_angles(0, 8, 360)
    np.testing.assert_allclose(angles, np.arange(8) * 45.0)


def test_replay_refuses_angles_it_does_not_cover(tooth_path):
    source = ReplaySource(tooth_path)
    with pytest.raises(SourceError, match="covers"):
        source.projection(200.0)


def test_missing_and_truncated_files_get_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        ReplaySource(tmp_path / "nope.h5")
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SourceError, match="cannot read HDF5"):
        ReplaySource(bad)
    with h5py.File(tmp_path / "not_dx.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(SourceError, match="not a Data Exchange"):
        ReplaySource(tmp_path / "not_dx.h5")


def test_camera_refuses_frames_of_the_wrong_shape(tmp_path):
    from tomobluesky.devices import DXchangeWriter

    writer = DXchangeWriter(tmp_path / "x.h5", (2, 8), "cam_image")
    writer.append(PROJECTION, np.zeros((2, 8)))
    with pytest.raises(ValueError, match="does not fit the detector"):
        writer.append(PROJECTION, np.zeros((3, 8)))
    writer.close()


def test_other_detectors_are_read_beside_the_camera_and_per_step_replaces_the_step(RE, documents, beamline):
    from ophyd import Signal

    camera, *stages = beamline
    monitor = Signal(name="ring_current", value=400.0)
    visited = []

    def per_step(detectors, motor, angle):  # bluesky's per_step signature: settle, then read twice
        visited.append(angle)
        yield from bps.mv(motor, angle)
        yield from bps.trigger_and_read(list(detectors) + [motor])
        yield from bps.trigger_and_read(list(detectors) + [motor])

    RE(tomo_scan([camera, monitor], *stages, num_projections=4, num_darks=1, num_flats=1, per_step=per_step))
    start, stop = documents[0][1], documents[-1][1]
    assert start["detectors"] == ["camera", "ring_current"] and "per_step" in start["plan_args"]
    assert visited == pytest.approx([0.0, 45.0, 90.0, 135.0])
    assert stop["num_events"] == {"dark": 1, "flat": 1, "primary": 8}
    primary = next(d for n, d in documents if n == "descriptor" and d["name"] == "primary")
    assert {"camera_image", "ring_current", "rotation"} <= set(primary["data_keys"])
    assert _by_stream(documents)["primary"] == 8


@pytest.mark.parametrize("plan", [tomo_scan, tomo_fly_scan])
def test_detectors_without_a_camera_first_are_refused_before_the_run(RE, documents, beamline, plan):
    from ophyd import Signal

    camera, *stages = beamline
    with pytest.raises(PlanArgumentError, match="first entry is the tomography camera"):
        RE(plan([Signal(name="ring_current")], *stages, num_projections=4))
    with pytest.raises(PlanArgumentError, match="first entry is the tomography camera"):
        RE(plan([], *stages, num_projections=4))
    assert not documents and camera.last_file is None


def test_a_fly_scan_flies_one_camera(RE, documents, beamline):
    from ophyd import Signal

    camera, *stages = beamline
    with pytest.raises(PlanArgumentError, match="tomo_fly_scan flies one camera, not 2 detectors"):
        RE(tomo_fly_scan([camera, Signal(name="ring_current")], *stages, num_projections=4))
    assert not documents


@pytest.mark.parametrize("plan, extra", [(tomo_scan, {}), (tomo_fly_scan, {"velocity": 1e4})])
def test_every_document_validates_against_event_models_schemas(RE, documents, beamline, plan, extra):
    from event_model import DocumentNames, schema_validators

    RE(plan(*beamline, num_projections=8, num_darks=1, num_flats=1, **extra))
    invalid = []
    for name, doc in documents:
        try:
            schema_validators[DocumentNames(name)].validate(doc)
        except Exception as err:  # collected, so the message names every invalid document
            invalid.append(f"{name}: {str(err)[:200]}")
    assert not invalid, invalid
    assert {"start", "descriptor", "event", "stream_resource", "stream_datum", "stop"} <= {n for n, _ in documents}
