"""The camera's Data Exchange file: float32 or uint16 pixels, one chunk per frame."""

import h5py
import numpy as np
import pytest

from tomobluesky.devices import DARK, FLAT, PROJECTION, DXchangeWriter, PhantomSource, make_sim_beamline
from tomobluesky.plans import tomo_scan


def test_uint16_frames_are_rounded_to_nearest_and_clipped(tmp_path):
    writer = DXchangeWriter(tmp_path / "u16.h5", (2, 4), "cam_image", dtype="uint16")
    counts = np.array([[-7.0, 0.4, 0.5, 1.49], [2.5, 65534.4, 65535.6, 1e9]], np.float32)
    writer.append(PROJECTION, counts, theta_deg=3.0)
    writer.append(DARK, np.full((2, 4), 99.7, np.float64))  # any real type converts
    writer.append(FLAT, np.arange(8, dtype=np.uint16).reshape(2, 4))  # uint16 goes in as is
    writer.close()
    with h5py.File(tmp_path / "u16.h5", "r") as f:
        data = f["/exchange/data"]
        assert data.dtype == np.dtype("<u2") and data.chunks == (1, 2, 4) and data.compression is None
        # halves go to the even neighbour, as np.rint does
        np.testing.assert_array_equal(data[0], [[0, 0, 0, 1], [2, 65534, 65535, 65535]])
        np.testing.assert_array_equal(f["/exchange/data_dark"][0], np.full((2, 4), 100))
        np.testing.assert_array_equal(f["/exchange/data_white"][0], np.arange(8).reshape(2, 4))
        assert f["/exchange/theta"][:].tolist() == [3.0]


def test_float32_stays_the_default_and_is_stored_exactly(tmp_path):
    writer = DXchangeWriter(tmp_path / "f32.h5", (3, 5), "cam_image")
    frames = np.random.default_rng(0).normal(1000, 300, (4, 3, 5)).astype(np.float32)
    for frame in frames:
        writer.append(PROJECTION, frame)
    writer.append(PROJECTION, frames[0].astype(">f4"))  # big-endian input is converted, not misread
    writer.close()
    with h5py.File(tmp_path / "f32.h5", "r") as f:
        data = f["/exchange/data"]
        assert data.dtype == np.dtype("<f4") and data.chunks == (1, 3, 5)
        np.testing.assert_array_equal(data[:4], frames)
        np.testing.assert_array_equal(data[4], frames[0])


def test_a_non_contiguous_frame_is_written_in_its_logical_order(tmp_path):
    writer = DXchangeWriter(tmp_path / "t.h5", (3, 2), "cam_image", dtype="uint16")
    frame = np.arange(6, dtype=np.float32).reshape(2, 3).T  # a transposed view
    writer.append(PROJECTION, frame)
    writer.close()
    with h5py.File(tmp_path / "t.h5", "r") as f:
        np.testing.assert_array_equal(f["/exchange/data"][0], frame)


@pytest.mark.parametrize("dtype", ["int16", "float64", "uint8", "not a type"])
def test_other_pixel_types_are_refused(tmp_path, dtype):
    with pytest.raises(ValueError, match="float32 or uint16"):
        DXchangeWriter(tmp_path / "x.h5", (2, 2), "cam_image", dtype=dtype)


def test_uint16_camera_in_a_scan(RE, documents, tmp_path):
    source = PhantomSource(n_slices=4, n_columns=24, axis_offset=1.0, noise=False, ring_strength=0.01)
    camera, *rest = make_sim_beamline(source, tmp_path, dtype="uint16")
    RE(tomo_scan(camera, *rest, num_projections=6, num_darks=1, num_flats=2))
    described = [d["data_keys"]["camera_image"] for n, d in documents if n == "descriptor"]
    assert described and all(k["dtype_numpy"] == "<u2" for k in described)
    with h5py.File(camera.last_file, "r") as f:
        data, theta = f["/exchange/data"], f["/exchange/theta"][:]
        assert data.dtype == np.dtype("<u2") and data.shape == (6, 4, 24)
        for frame, angle in zip(data[:], theta):
            np.testing.assert_array_equal(frame, np.rint(source.projection(angle)))
        np.testing.assert_array_equal(f["/exchange/data_white"][:], np.full((2, 4, 24), 20100))
        np.testing.assert_array_equal(f["/exchange/data_dark"][:], np.full((1, 4, 24), 100))


def test_float32_camera_describes_f4(tmp_path):
    camera, *_ = make_sim_beamline(PhantomSource(n_slices=2, n_columns=8), tmp_path)
    assert camera.describe()["camera_image"]["dtype_numpy"] == "<f4"
