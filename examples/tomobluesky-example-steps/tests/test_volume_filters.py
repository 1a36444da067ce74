"""median3d and unsharp_mask: known answers on simple volumes, and the same result slab by slab (through
tomobluesky's run_volume_steps, with the halo each step declares) as on the whole volume at once."""

import numpy as np
import pytest

from tomobluesky.steps import Pipeline, PipelineError, get_step, run_volume_steps
from tomobluesky.store import MultiscaleWriter, open_multiscale

SHAPE = (22, 20, 20)  # slices, y, x


def _pipeline(*entries):
    return Pipeline.from_spec([{"step": "reconstruct"}, *entries])


def _run(pipeline, volume, tmp_path, slab):
    """The volume steps of ``pipeline`` as tomobluesky runs them after a scan: on the volume's multiscale
    store, ``slab`` slices at a time; the first step's output (full resolution)."""
    store = tmp_path / "volume.zarr"
    if not store.exists():
        MultiscaleWriter(store, volume.shape, min_size=volume.shape[1]).write_slab(0, volume)
    out = run_volume_steps(pipeline, store, tmp_path / f"processed-{slab}", slab=slab)
    name = pipeline.stage("volume")[0].step.name
    return open_multiscale(out["arrays"][name])[0][...]


def _edge(value_left=0.0, value_right=1.0):
    """A plane edge across x: the left half one value, the right half another."""
    volume = np.full(SHAPE, value_left, np.float32)
    volume[:, :, SHAPE[2] // 2:] = value_right
    return volume


@pytest.mark.parametrize("size", [3, 5])
def test_median3d_removes_isolated_voxels_and_keeps_a_plane_edge(tmp_path, size):
    edge = _edge()
    speckled = edge.copy()
    speckled[[3, 10, 17], [4, 12, 6], [2, 15, 5]] = [5.0, -3.0, 2.0]  # away from the edge and each other
    out = _run(_pipeline({"step": "median3d", "params": {"size": size}}), speckled, tmp_path, slab=4)
    np.testing.assert_array_equal(out, edge)


def test_unsharp_mask_steepens_an_edge_and_leaves_flat_regions(tmp_path):
    out = _run(_pipeline({"step": "unsharp_mask", "params": {"sigma": 1.5, "amount": 0.5}}), _edge(), tmp_path,
               slab=4)
    middle = SHAPE[2] // 2
    assert np.all(out[:, :, middle - 1] < -0.05) and np.all(out[:, :, middle] > 1.05)  # over- and undershoot
    # farther from the edge than the Gaussian reaches (round(4 σ) = 6 voxels): unchanged, up to rounding
    np.testing.assert_allclose(out[:, :, :middle - 6], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, :, middle + 6:], 1.0, atol=1e-6)


def test_unsharp_mask_keeps_a_linear_ramp_across_slab_borders(tmp_path):
    """The blur of a linear ramp is the same ramp: away from the volume's ends, across slab borders too."""
    ramp = np.broadcast_to(np.arange(SHAPE[0], dtype=np.float32)[:, None, None], SHAPE).copy()
    out = _run(_pipeline({"step": "unsharp_mask", "params": {"sigma": 2.0}}), ramp, tmp_path, slab=2)
    np.testing.assert_allclose(out[8:-8], ramp[8:-8], atol=1e-4)


@pytest.mark.parametrize("entry", [
    {"step": "median3d", "params": {"size": 5}},
    {"step": "unsharp_mask", "params": {"sigma": 2.0, "amount": 1.5}},
])
def test_slab_by_slab_is_the_whole_volume_at_once(tmp_path, entry):
    volume = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    step = get_step(entry["step"])  # the installed entry point, as tomobluesky loads it
    whole = step.function(volume, **entry["params"])
    pipeline = _pipeline(entry)
    for slab in (2, 6, SHAPE[0]):
        np.testing.assert_allclose(_run(pipeline, volume, tmp_path, slab), whole, rtol=1e-6, atol=1e-6)
    # the check can fail: cut into slabs without the halo, the result differs at the slab borders
    no_halo = np.concatenate([step.function(volume[z:z + 2], **entry["params"]) for z in range(0, SHAPE[0], 2)])
    assert not np.allclose(no_halo, whole, atol=1e-3)


@pytest.mark.parametrize("entry, message", [
    ({"step": "median3d", "params": {"size": 7}}, "parameter 'size'=7: Input should be 3 or 5"),
    ({"step": "unsharp_mask", "params": {"sigma": 3}}, "parameter 'sigma'=3: Input should be less than or equal to 2"),
    ({"step": "unsharp_mask", "params": {"amount": -1}}, "parameter 'amount'=-1: Input should be greater than or"),
])
def test_parameters_outside_the_halo_are_refused(entry, message):
    """A size or sigma beyond what the declared halo covers would make slab borders wrong: refused up front."""
    with pytest.raises(PipelineError, match=message):
        _pipeline(entry)
