"""The processing steps of a scan on the stop path (docs/steps.md).

A scan's pipeline comes from its start document (``md["pipeline"]``) or,
when it names none, from the settings: the default chain, with ``rings``
when ``ring_removal`` is set and ``paganin`` when ``phase_retrieval`` is.
Projection steps run on each block of frames as it is read (with their halo
of detector rows), sinogram steps on each slab, the volume-producing step's
parameters choose the engine, and volume steps run on the finished store.
"""

from __future__ import annotations

import numpy as np

from ..schema import ReconSettings
from ..steps import Pipeline
from ._scan import DARKS, FLATS, PROJECTIONS, HDF5Scan


def scan_pipeline(settings: ReconSettings, spec=None, *, pixel_size_um: float | None = None,
                  energy_kev: float | None = None) -> Pipeline:
    """The pipeline a scan runs: ``spec`` (from its start document) when given, else the settings'
    ``pipeline``, else the default chain as the settings ask (rings, phase retrieval)."""
    spec = spec if spec is not None else settings.pipeline
    if spec is not None:
        return Pipeline.from_spec(spec)
    entries = [{"step": "normalize"}]
    if settings.phase_retrieval:
        entries.append({"step": "paganin", "params": _paganin_params(settings.phase_retrieval, pixel_size_um,
                                                                      energy_kev)})
    entries.append({"step": "minus_log"})
    if settings.ring_removal:
        entries.append({"step": "rings"})
    entries.append({"step": "reconstruct"})
    return Pipeline.from_spec(entries)


def _paganin_params(phase: dict, pixel_size_um, energy_kev) -> dict:
    """``phase_retrieval`` = {"distance": metres, "delta_beta": δ/β}; pixel size and energy from the scan."""
    missing = [k for k in ("distance", "delta_beta") if k not in phase]
    if missing:
        raise ValueError(f"phase_retrieval needs {', '.join(missing)} (distance in metres, delta_beta = δ/β)")
    if pixel_size_um is None or energy_kev is None:
        raise ValueError("phase_retrieval needs the scan's pixel_size and energy in its start document")
    return {"pixel_size_m": float(pixel_size_um) * 1e-6, "distance_m": float(phase["distance"]),
            "energy_kev": float(energy_kev), "delta_beta": float(phase["delta_beta"])}


def reads_as_standard(pipeline: Pipeline) -> bool:
    """True when the projection steps are the stop path's own reading (median flat field, −log),
    which ``read_sinograms`` does in one pass without copies."""
    stages = pipeline.stage("projections")
    return [s.step.name for s in stages] == ["normalize", "minus_log"] and \
        stages[0].params.get("averaging", "median") == "median"


def read_sinograms_through(scan: HDF5Scan, rows, pipeline: Pipeline, *, frame_block: int = 32) -> np.ndarray:
    """Sinograms (rows, angles, columns) of detector ``rows`` = (first, end) after the pipeline's
    projection steps, each block of frames read with the steps' halo of rows on each side."""
    first, end = rows
    halo = pipeline.halo("projections")
    top, bottom = max(first - halo, 0), min(end + halo, scan.detector_shape[0])
    window = slice(top, bottom)
    context = {"flats": scan.read_rows(FLATS, window).astype(np.float32),
               "darks": scan.read_rows(DARKS, window).astype(np.float32)}
    out = np.empty((end - first, scan.num_projections, scan.detector_shape[1]), dtype=np.float32)
    for start, block in scan.iter_rows(PROJECTIONS, window, frame_block=frame_block):
        block = pipeline.run("projections", block.astype(np.float32), context)
        out[:, start:start + len(block), :] = block[:, first - top:end - top, :].transpose(1, 0, 2)
    return out


def own_engine(pipeline: Pipeline) -> bool:
    """True when the volume comes from tomobluesky's own ``reconstruct`` step (the stop path then calls the
    engine itself, with its memory plan's batch size and threads); a plugin's step is called as it is."""
    from ..steps import _builtin

    return pipeline.producer.step.function is _builtin.reconstruct


def engine_options(pipeline: Pipeline | None, settings: ReconSettings) -> dict:
    """algorithm and filter of the reconstruction: the pipeline's reconstruct step's, else the settings'."""
    options = {"algorithm": settings.algorithm, "filter_name": settings.filter_name}
    if pipeline is not None:
        options.update({k: v for k, v in pipeline.producer.params.items() if v is not None})
    return options
