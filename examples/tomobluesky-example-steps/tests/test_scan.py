"""End to end, as at the beamline: a simulated scan of a phantom whose detector takes zingers, run by the
RunEngine with the pipeline in the scan's metadata, reconstructed live in this process (a MemorySink in
place of Tiled). With remove_zingers the volume is as good as a scan without zingers."""

from dataclasses import dataclass

import numpy as np
import pytest

from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import MemorySink, live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.recon import circle_mask
from tomobluesky.steps import get_step
from tomobluesky.store import open_multiscale

DEFAULT = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"}]
WITH_PLUGINS = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "remove_zingers"}, {"step": "reconstruct"},
                {"step": "median3d"}]


@dataclass
class ZingerPhantom(PhantomSource):
    """The phantom, with ``per_frame`` detector pixels saturated (4 × the open beam) in each projection,
    none in the first and last and never one pixel in two frames running (what remove_zingers leaves)."""

    per_frame: int = 0
    projections: int = 0
    taken: int = 0

    def projection(self, angle_deg):
        frame = super().projection(angle_deg)
        i, self.taken = self.taken, self.taken + 1
        if 0 < i < self.projections - 1:
            for k in range(self.per_frame):  # a new row and a column 11 + 23 k further each frame
                frame[(3 * i + k) % self.n_slices, (11 * i + 23 * k) % self.n_columns] = 4 * self.flat_counts
        return frame


def _scan(RE, tmp_path, name, pipeline, zingers):
    sink = MemorySink(tmp_path / name)
    token = RE.subscribe(live_reconstruction_router(sink))
    source = ZingerPhantom(n_slices=8, n_columns=64, per_frame=zingers, projections=90)
    # the axis is searched on the rows after the pipeline's projection and sinogram steps, as reconstructed
    RE(tomo_scan(*make_sim_beamline(source, tmp_path / name / "detector"), num_projections=90, num_darks=2,
                 num_flats=2, md={"pipeline": pipeline}))
    RE.unsubscribe(token)
    (uid, (volume, metadata)), = sink.volumes.items()
    assert sink.volume_status(uid) == "complete" and not sink.failures
    return volume, metadata, sink.outputs.get(uid), source


def _rmse(volume, truth):
    inside = circle_mask(volume.shape[-1])
    return float(np.sqrt(np.mean((volume - truth)[:, inside] ** 2)))


def test_a_scan_with_zingers_reconstructs_as_well_as_one_without(RE, tmp_path):
    clean, clean_md, _, source = _scan(RE, tmp_path, "clean", DEFAULT, zingers=0)
    streaked, _, _, _ = _scan(RE, tmp_path, "zingers", DEFAULT, zingers=3)
    fixed, metadata, outputs, _ = _scan(RE, tmp_path, "fixed", WITH_PLUGINS, zingers=3)
    truth = source.volume
    # the centre was found after remove_zingers: where it is found without zingers, on the true axis
    assert abs(metadata["center"] - clean_md["center"]) < 0.05
    assert abs(metadata["center"] - source.center) < 0.25
    baseline = _rmse(clean, truth)
    assert _rmse(streaked, truth) > 2.5 * baseline  # the zingers matter ...
    assert _rmse(fixed, truth) < 1.01 * baseline    # ... and the step takes them out
    recorded = {e["step"]: e for e in metadata["pipeline"]}
    assert list(recorded) == ["normalize", "minus_log", "remove_zingers", "reconstruct", "median3d"]
    assert recorded["remove_zingers"]["package"] == recorded["median3d"]["package"] == "tomobluesky-example-steps"
    # the volume step's output is the filtered volume (in Tiled: processed/<scan uid>/median3d)
    arrays, _ = outputs
    filtered = open_multiscale(arrays["arrays"]["median3d"])[0][...]
    np.testing.assert_allclose(filtered, get_step("median3d").function(fixed), rtol=1e-6)
