"""Segmentation on a phantom of separate ellipsoids whose volumes are known analytically (4/3·π·abc),
slab by slab, with objects crossing slab borders; and after a projection → reconstruction round trip."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.steps import Pipeline, run_volume_steps
from tomobluesky.steps import _builtin
from tomobluesky.steps._segment import segment
from tomobluesky.store import MultiscaleWriter, open_multiscale

# centre (z, y, x) and semi-axes (c, b, a) in voxels; several cross the 16-slice slab borders
ELLIPSOIDS = [((16, 40, 40), (9, 12, 8)), ((30, 90, 45), (6, 10, 14)), ((47, 45, 90), (12, 7, 9)),
              ((12, 95, 95), (7, 7, 7)), ((48, 88, 40), (5, 9, 6)), ((32, 64, 64), (4, 5, 5))]
SHAPE = (64, 128, 128)
SINOGRAM_ORDER = _builtin._SINOGRAM_ORDER


def _sub(supersample):
    return (np.arange(supersample) + 0.5) / supersample - 0.5


def ellipsoids(shape=SHAPE, supersample=3) -> np.ndarray:
    """Mean occupancy of each voxel (supersampled), 1.0 inside; each ellipsoid evaluated in its bounding box."""
    volume = np.zeros(shape, dtype=np.float32)
    for centre, axes in ELLIPSOIDS:
        box = tuple(slice(int(c - r - 1), int(c + r + 2)) for c, r in zip(centre, axes))
        grids = np.meshgrid(*(np.arange(b.start, b.stop, dtype=np.float32) for b in box), indexing="ij")
        for d in np.stack(np.meshgrid(*[_sub(supersample)] * 3, indexing="ij"), -1).reshape(-1, 3):
            r2 = sum(((g + dd - c) / r) ** 2 for g, dd, c, r in zip(grids, d, centre, axes))
            volume[box] += (r2 <= 1) / supersample ** 3
    return volume


def project_ellipsoids(theta, mu, shape=SHAPE, sub_slices=3, detector_samples=4) -> np.ndarray:
    """Exact line integrals (slices, angles, columns) of the ellipsoids, each detector pixel and slice
    averaged over its extent (the geometry of ``recon.project``: x along columns, y up the rows)."""
    slices, n, _ = shape
    t = (np.arange(n)[:, None] - (n - 1) / 2 + _sub(detector_samples)[None, :]).ravel()[None, :]
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    out = np.zeros((slices, len(theta), n))
    for (cz, cy, cx), (c, b, a) in ELLIPSOIDS:
        x0, y0 = cx - (n - 1) / 2, (n - 1) / 2 - cy
        for z in range(int(cz - c - 1), int(cz + c + 2)):
            for dz in _sub(sub_slices):
                f = 1 - ((z + dz - cz) / c) ** 2
                if f <= 0:
                    continue
                az, bz = a * np.sqrt(f), b * np.sqrt(f)
                s2 = (az * cos) ** 2 + (bz * sin) ** 2
                rays = 2 * az * bz / s2 * np.sqrt(np.clip(s2 - (t - x0 * cos - y0 * sin) ** 2, 0, None))
                out[z] += mu * rays.reshape(len(theta), n, detector_samples).mean(axis=2) / sub_slices
    return out.astype(np.float32)


def true_volumes():
    return sorted(4 / 3 * np.pi * a * b * c for _, (c, b, a) in ELLIPSOIDS)


def check_objects(table, voxel_um=None, tolerance=0.05):
    assert len(table["label"]) == len(ELLIPSOIDS)
    measured = sorted(table["voxels"].tolist())
    for got, want in zip(measured, true_volumes()):
        assert abs(got - want) / want < tolerance, (got, want)
    if voxel_um is not None:
        np.testing.assert_allclose(table["volume_um3"], table["voxels"] * voxel_um ** 3)


def test_labels_are_joined_across_slab_borders_and_volumes_match_the_ellipsoids():
    rng = np.random.default_rng(3)
    volume = ellipsoids() + rng.normal(0, 0.15, SHAPE).astype(np.float32)
    out = segment(volume, sigma=1.0, slab=16, voxel_size_um=0.65)
    check_objects(out["objects"], voxel_um=0.65)
    labels = np.asarray(out["labels"])
    assert labels.dtype == np.uint32 and set(np.unique(labels)) == set(range(len(ELLIPSOIDS) + 1))
    for (cz, cy, cx), (c, _, _) in ELLIPSOIDS:  # one label from the top to the bottom of each ellipsoid
        column = labels[cz - c + 2:cz + c - 1, cy, cx]
        assert len(set(column.tolist())) == 1 and column[0] > 0
    table = out["objects"]
    for i, label in enumerate(table["label"]):  # the table describes the label volume
        where = np.argwhere(labels == label)
        assert table["voxels"][i] == len(where)
        np.testing.assert_allclose([table[f"centroid_{a}"][i] for a in "zyx"], where.mean(axis=0), atol=1e-6)
        assert [table[f"bbox_min_{a}"][i] for a in "zyx"] == where.min(axis=0).tolist()
        assert [table[f"bbox_max_{a}"][i] for a in "zyx"] == (where.max(axis=0) + 1).tolist()


def test_slab_height_does_not_change_the_result():
    volume = ellipsoids()
    whole = segment(volume, sigma=1.0, slab=SHAPE[0])
    slabs = segment(volume, sigma=1.0, slab=8)
    np.testing.assert_array_equal(np.asarray(whole["labels"]), np.asarray(slabs["labels"]))
    assert whole["threshold"] == pytest.approx(slabs["threshold"])


def test_small_objects_are_dropped_and_multiotsu_keeps_the_brightest_class():
    volume = ellipsoids() * 2.0
    volume[5:7, 5:7, 5:7] = 2.0  # 8 voxels, bright
    volume[(slice(20, 40), slice(60, 68), slice(100, 110))] = 1.0  # a dimmer box
    out = segment(volume, sigma=0, method="multiotsu", classes=3, min_voxels=20)
    labels = np.asarray(out["labels"])
    assert labels[6, 6, 6] == 0 and labels[30, 64, 105] == 0  # too small; the middle class
    assert len(out["objects"]["label"]) == len(ELLIPSOIDS)


def test_segmentation_of_a_reconstructed_phantom(tmp_path):
    """Project the ellipsoids, reconstruct with the engine, segment the stored volume through the pipeline."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sinograms = project_ellipsoids(theta, mu=0.02)
    reconstruction = recon.reconstruct(sinograms, theta, **SINOGRAM_ORDER)
    store = tmp_path / "volume"
    writer = MultiscaleWriter(store, reconstruction.shape, min_size=32)
    writer.write_slab(0, reconstruction)
    pipeline = Pipeline.from_spec([{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"},
                                   {"step": "segment", "params": {"sigma": 1.0, "voxel_size_um": 2.0, "slab": 16}}])
    out = run_volume_steps(pipeline, store, tmp_path / "processed", slab=16)
    check_objects(out["tables"]["segment/objects"], voxel_um=2.0)
    # the engine's reconstruction of the projections is the phantom, not a mirror of it
    phantom = ellipsoids()
    assert np.corrcoef(reconstruction.ravel(), phantom.ravel())[0, 1] > 0.95
    labels = open_multiscale(out["arrays"]["segment/labels"])
    assert labels[0].dtype == np.uint32 and labels[0].shape == SHAPE
    np.testing.assert_array_equal(labels[1][...], labels[0][...][::2, ::2, ::2])  # a label pyramid samples
    assert not (tmp_path / "processed" / ".segment.work").exists()


def test_the_threshold_of_a_big_volume_comes_from_evenly_spaced_slices_whatever_the_slab(monkeypatch):
    from tomobluesky.steps import _segment

    monkeypatch.setattr(_segment, "_sample_planes",
                        lambda depth, plane, budget=2 ** 25: np.arange(0, depth, 5))  # a "big" volume
    volume = ellipsoids() + np.random.default_rng(4).normal(0, 0.1, SHAPE).astype(np.float32)
    results = [segment(volume, sigma=1.0, slab=slab) for slab in (8, 24)]
    assert results[0]["threshold"] == results[1]["threshold"]
    np.testing.assert_array_equal(np.asarray(results[0]["labels"]), np.asarray(results[1]["labels"]))
    check_objects(results[0]["objects"])
