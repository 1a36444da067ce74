"""`tomobluesky export --format nxtomo`: a raw scan's Data Exchange file to NXtomo from the command line,
read back with ESRF's nxtomo package; wrong inputs are one line naming the problem."""

import h5py
import numpy as np
import pytest

from tomobluesky.cli import main


def _raw_scan(path):
    """5 projections over 0..144°, 2 flats, 1 dark, every pixel distinct, as the camera writes them."""
    rng = np.random.default_rng(1)
    frames = {name: rng.integers(0, 60000, (count, 4, 6), dtype=np.uint16)
              for name, count in (("data", 5), ("data_white", 2), ("data_dark", 1))}
    with h5py.File(path, "w") as f:
        for name, array in frames.items():
            f[f"/exchange/{name}"] = array
        f["/exchange/theta"] = np.linspace(0, 144, 5)
        f["/exchange/theta"].attrs["units"] = "degrees"
    return frames


def test_export_nxtomo_writes_a_raw_scan_that_nxtomo_reads_back(tmp_path, capsys):
    from nxtomo import NXtomo

    frames = _raw_scan(tmp_path / "scan.h5")
    out = tmp_path / "scan.nx"
    assert main(["export", str(tmp_path / "scan.h5"), str(out), "--format", "nxtomo", "--sample-name", "tooth",
                 "--energy-kev", "25", "--pixel-size-m", "6.5e-6", "--distance-m", "0.12"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    nx = NXtomo().load(str(out), data_path="entry")
    keys = np.asarray([k.value for k in nx.instrument.detector.image_key_control])
    np.testing.assert_array_equal(keys, [2, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(nx.sample.rotation_angle.to("degree").magnitude[keys == 0], [0, 36, 72, 108, 144])
    assert nx.sample.name == "tooth"
    assert nx.instrument.beam.incident_energy.to("keV").magnitude == pytest.approx(25.0)
    assert nx.instrument.detector.x_pixel_size.to("m").magnitude == pytest.approx(6.5e-6)
    assert nx.instrument.detector.distance.to("m").magnitude == pytest.approx(0.12)
    with h5py.File(out) as f:
        data = f["/entry/instrument/detector/data"]
        for key, name in ((2, "data_dark"), (1, "data_white"), (0, "data")):
            np.testing.assert_array_equal(data[np.flatnonzero(keys == key)], frames[name])
    # a second export to the same file needs --overwrite
    assert main(["export", str(tmp_path / "scan.h5"), str(out), "--format", "nxtomo"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "scan.h5"), str(out), "--format", "nxtomo", "--overwrite"]) == 0


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "is not a file"),
    (lambda p: p.write_text("not hdf5"), "is not an HDF5 file"),
    (lambda p: h5py.File(p, "w").close(), "is not a Data Exchange scan: it lacks /exchange/data"),
])
def test_a_wrong_input_is_one_line_naming_it(tmp_path, capsys, make, message):
    source = tmp_path / "input.h5"
    make(source)
    assert main(["export", str(source), str(tmp_path / "out.nx"), "--format", "nxtomo"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tomobluesky export: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.nx").exists()


def test_nxtomo_options_with_a_volume_format_are_refused(tmp_path, capsys):
    assert main(["export", "some-uid", str(tmp_path / "v.nxs"), "--format", "nxtomoproc", "--energy-kev", "25"]) == 1
    assert "--energy-kev apply to --format nxtomo (raw scans) only, not to nxtomoproc" in capsys.readouterr().err
