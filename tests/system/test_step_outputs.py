"""Volume steps' outputs registered in a real Tiled server, read back by an analyst's client."""

import uuid

import numpy as np
import pytest

from tomobluesky.catalog import TiledSink
from tomobluesky.steps import Pipeline, run_volume_steps

pytestmark = pytest.mark.system


def test_segmentation_outputs_are_catalogued_beside_the_volume(tiled_server):
    scan_uid = str(uuid.uuid4())
    rng = np.random.default_rng(5)
    volume = rng.normal(0, 0.1, (32, 48, 48)).astype(np.float32)
    volume[4:12, 5:15, 5:15] += 1   # two boxes, one crossing the 16-slice slab border
    volume[10:26, 30:40, 28:44] += 1
    sink = TiledSink(tiled_server.client(), volume_dir=tiled_server.layout.volumes)
    sink.write_volume(scan_uid, volume, {"scan_uid": scan_uid})
    pipeline = Pipeline.from_spec([{"step": "reconstruct"},
                                   {"step": "segment", "params": {"sigma": 0, "voxel_size_um": 2.0}}])
    outputs = run_volume_steps(pipeline, sink.volume_path(scan_uid), sink.steps_dir(scan_uid), slab=16)
    sink.register_outputs(scan_uid, outputs, {"scan_uid": scan_uid, "pipeline": pipeline.record()})

    node = tiled_server.reader_client()["processed"][scan_uid]
    assert node.metadata["status"] == "complete"  # the volume itself is untouched
    labels = node["segment"]["labels"]
    assert labels.metadata["pipeline"][1]["step"] == "segment"
    full = labels["0"].read()
    assert full.dtype == np.uint32 and full.shape == volume.shape
    assert full[8, 10, 10] == 1 and full[18, 35, 36] == 2 and full[0, 0, 0] == 0
    assert (full == 1).sum() == 8 * 10 * 10 and (full == 2).sum() == 16 * 10 * 16
    table = node["segment"]["objects"].read()
    assert table["voxels"].tolist() == [800, 2560]
    assert table["volume_um3"].tolist() == [800 * 8.0, 2560 * 8.0]
    assert table["bbox_min_z"].tolist() == [4, 10] and table["bbox_max_z"].tolist() == [12, 26]
    assert node.metadata["step_values"]["segment/threshold"] == pytest.approx(outputs["values"]["segment/threshold"])
