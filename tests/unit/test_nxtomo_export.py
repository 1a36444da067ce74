"""dxchange.export_nxtomo: a Data Exchange scan written as NXtomo with ESRF's nxtomo package and read
back with it (what nabu and tomwer do): definition, image keys, angles, and every frame equal to the source."""

import h5py
import numpy as np
import pytest

from tomobluesky.dxchange import export_nxtomo


def _scan(path, *, theta_units="rad"):
    """A small Data Exchange scan: 7 projections over 180°, 3 flats, 2 darks, every pixel distinct (uint16)."""
    rng = np.random.default_rng(0)
    frames = {name: rng.integers(0, 60000, (count, 5, 9), dtype=np.uint16)
              for name, count in (("data", 7), ("data_white", 3), ("data_dark", 2))}
    theta = np.linspace(0, np.pi, 7, endpoint=False)
    with h5py.File(path, "w") as f:
        for name, array in frames.items():
            f[f"/exchange/{name}"] = array
        f["/exchange/theta"] = theta if theta_units == "rad" else np.degrees(theta)
        f["/exchange/theta"].attrs["units"] = "radians" if theta_units == "rad" else "degrees"
    return frames, np.degrees(theta)


@pytest.mark.parametrize("units", ["rad", "deg"])
def test_read_back_with_nxtomo(tmp_path, units):
    from nxtomo import NXtomo
    from nxtomo.nxobject.nxdetector import ImageKey

    frames, degrees = _scan(tmp_path / "scan.h5", theta_units=units)
    out = export_nxtomo(tmp_path / "scan.h5", tmp_path / "scan.nx", sample_name="tooth", energy_kev=25.0,
                        pixel_size_m=6.5e-6, distance_m=0.12)
    with h5py.File(out) as f:
        assert f["/entry/definition"][()] == b"NXtomo" and f["/entry"].attrs["NX_class"] == "NXentry"
    assert NXtomo.get_valid_entries(str(out)) == ("/entry",)
    nx = NXtomo().load(str(out), data_path="entry")
    keys = np.asarray([ImageKey(k).value for k in nx.instrument.detector.image_key_control])
    np.testing.assert_array_equal(keys, [2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    angles = nx.sample.rotation_angle.to("degree").magnitude
    np.testing.assert_allclose(angles[keys == 0], degrees, atol=1e-9)
    np.testing.assert_allclose(angles[keys != 0], 0.0)
    assert nx.sample.name == "tooth"
    assert nx.instrument.beam.incident_energy.to("keV").magnitude == pytest.approx(25.0)
    assert nx.instrument.detector.x_pixel_size.to("m").magnitude == pytest.approx(6.5e-6)
    assert nx.instrument.detector.distance.to("m").magnitude == pytest.approx(0.12)
    with h5py.File(out) as f:
        data = f["/entry/instrument/detector/data"]
        assert data.dtype == np.uint16  # the detector's counts, not converted
        for key, name in ((2, "data_dark"), (1, "data_white"), (0, "data")):
            np.testing.assert_array_equal(data[np.flatnonzero(keys == key)], frames[name])


def test_the_tooth_scan(tmp_path, tooth_path):
    """The real scan: 181 projections over 0..180°, its flats and darks, frame for frame."""
    from nxtomo import NXtomo

    out = export_nxtomo(tooth_path, tmp_path / "tooth.nx")
    nx = NXtomo().load(str(out), data_path="entry")
    keys = np.asarray([k.value for k in nx.instrument.detector.image_key_control])
    with h5py.File(tooth_path) as src, h5py.File(out) as f:
        data = f["/entry/instrument/detector/data"]
        np.testing.assert_array_equal(data[keys == 0], src["/exchange/data"][()])
        np.testing.assert_array_equal(data[keys == 1], src["/exchange/data_white"][()])
        np.testing.assert_array_equal(data[keys == 2], src["/exchange/data_dark"][()])
        np.testing.assert_allclose(nx.sample.rotation_angle.to("degree").magnitude[keys == 0],
                                   src["/exchange/theta"][()], atol=1e-6)


def test_refuses_to_overwrite_and_names_what_is_missing(tmp_path):
    _scan(tmp_path / "scan.h5")
    export_nxtomo(tmp_path / "scan.h5", tmp_path / "scan.nx")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_nxtomo(tmp_path / "scan.h5", tmp_path / "scan.nx")
    export_nxtomo(tmp_path / "scan.h5", tmp_path / "scan.nx", overwrite=True)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["/exchange/data"] = np.zeros((2, 3, 3), np.uint16)
    with pytest.raises(ValueError, match="lacks /exchange/data_white, /exchange/data_dark, /exchange/theta"):
        export_nxtomo(tmp_path / "bad.h5", tmp_path / "bad.nx")
