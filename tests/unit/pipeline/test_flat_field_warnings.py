"""The stop path reports flats without beam once for the whole scan, with the columns they hit,
in what ``reconstruct_scan`` returns (for the volume's metadata) and in one logged warning."""

import h5py
import numpy as np

from tests.unit.pipeline.test_stop_path import write_scan
from tomobluesky.pipeline import HDF5Scan, reconstruct_scan
from tomobluesky.schema import ReconSettings


def _kill_flats(path, rows, columns):
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][:]
        flats[:, rows, columns] = 0.0
        f["/exchange/data_white"][...] = flats


def test_dead_flat_columns_are_named_once_for_the_whole_scan(tmp_path, caplog):
    path = write_scan(tmp_path / "scan.h5", rows=32, columns=64, angles=40, center=31.5)
    _kill_flats(path, slice(None), slice(12, 16))  # a dead strip over every row
    _kill_flats(path, slice(20, 22), 50)  # two pixels of one column
    with HDF5Scan.from_dxchange(path) as scan, caplog.at_level("WARNING"):
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "v.zarr", memory_budget=0,
                                writer_options={"min_size": 8})
    assert info["slabs"] > 1  # the warning would otherwise come once per slab
    [message] = info["flat_field_warnings"]
    assert "130 pixels (detector rows 0-31), in columns 12-15, 50" in message
    assert [r.getMessage() for r in caplog.records if "flats are not brighter" in r.getMessage()] == [message]


def test_good_flats_give_no_warnings(tmp_path):
    path = write_scan(tmp_path / "scan.h5", rows=8, columns=48, angles=30, center=23.5)
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=23.5), tmp_path / "v.zarr")
    assert info["flat_field_warnings"] == []
