"""`tomobluesky reconstruct FILE OUT`: the stop path from the shell."""

import json

import numpy as np
import zarr

from tomobluesky.cli import main
from tomobluesky.store import open_multiscale


def test_reconstruct_a_file_from_the_shell(tooth_path, tmp_path, capsys):
    out = tmp_path / "tooth.zarr"
    assert main(["reconstruct", str(tooth_path), str(out), "--json", "--pixel-size", "0.65"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["center"] - 295.75) <= 0.5 and info["slab_rows"] == 2 and info["slabs"] == 1
    levels = open_multiscale(out)
    assert [a.shape for a in levels] == [(2, 640, 640), (1, 320, 320), (1, 160, 160)]
    assert np.abs(levels[0][1]).max() > 0
    ome = zarr.open_group(out, mode="r").attrs["ome"]["multiscales"][0]
    assert [d["coordinateTransformations"][0]["scale"] for d in ome["datasets"]] == [[0.65] * 3, [1.3] * 3, [2.6] * 3]
    assert [a["unit"] for a in ome["axes"]] == ["micrometer"] * 3


def test_given_centre_and_a_missing_file(tooth_path, tmp_path, capsys):
    assert main(["reconstruct", str(tooth_path), str(tmp_path / "a.zarr"), "--center", "300", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["center"] == 300 and info["center_method"] == "given"
    assert main(["reconstruct", str(tmp_path / "nope.h5"), str(tmp_path / "b.zarr")]) == 1
    assert "Data Exchange file not found" in capsys.readouterr().err
