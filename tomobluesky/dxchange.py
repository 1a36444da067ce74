"""Data Exchange, the APS layout for tomography in HDF5: where frames and angles live, and what the angles mean.

The simulated camera writes it, the replay source and the stop path read it;
``export_nxtomo`` turns a scan into NXtomo for nabu and tomwer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

PROJECTIONS = "/exchange/data"
FLATS = "/exchange/data_white"
DARKS = "/exchange/data_dark"
THETA = "/exchange/theta"


def theta_degrees(dataset) -> np.ndarray:
    """The angles of a ``/exchange/theta`` dataset in degrees, float64.

    Files store degrees (as tooth.h5 does) or radians. Without a units
    attribute, angles spanning at most 2π are taken as radians.
    """
    theta = np.asarray(dataset, dtype=np.float64)
    units = dataset.attrs.get("units", b"")
    units = units.decode() if isinstance(units, bytes) else str(units)
    if units.lower().startswith("rad") or (not units and np.ptp(theta) <= 2 * math.pi + 1e-6):
        theta = np.degrees(theta)
    return theta


def export_nxtomo(source, output, *, entry: str = "entry", sample_name: str | None = None,
                  energy_kev: float | None = None, pixel_size_m: float | None = None,
                  distance_m: float | None = None, overwrite: bool = False) -> Path:
    """Write the Data Exchange scan ``source`` (HDF5) as an NXtomo entry ``entry`` of ``output``,
    with ESRF's ``nxtomo`` package (``pip install tomobluesky[nexus]``): the layout nabu and tomwer read.

    NXtomo keeps every frame in one stack, ``instrument/detector/data``, with
    ``image_key_control`` per frame (0 projection, 1 flat, 2 dark) and the
    sample's ``rotation_angle`` per frame in degrees: darks, then flats (both
    at the first projection's angle), then the projections.

    The frames are copied (the file stands alone), so the whole scan passes
    through memory once. ``energy_kev``, ``pixel_size_m`` (detector pixel)
    and ``distance_m`` (sample to detector) are written when given: nabu
    needs them for phase retrieval. Returns ``output``.
    """
    import h5py
    import pint

    try:
        from nxtomo import NXtomo
    except ImportError as err:
        raise RuntimeError("NXtomo export needs ESRF's nxtomo package: pip install 'tomobluesky[nexus]'") from err
    from nxtomo.nxobject.nxdetector import ImageKey
    from nxtomo.nxobject.nxsource import NXsource

    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True to replace the entry {entry!r} in it")
    with h5py.File(source, "r") as f:
        missing = [name for name in (PROJECTIONS, FLATS, DARKS, THETA) if name not in f]
        if missing:
            raise ValueError(f"{source} is not a Data Exchange scan: it lacks {', '.join(missing)}")
        projections, flats, darks = f[PROJECTIONS][()], f[FLATS][()], f[DARKS][()]
        angles = theta_degrees(f[THETA])
    if len(angles) != len(projections):
        raise ValueError(f"{source}: {len(angles)} angles for {len(projections)} projections")
    if not (flats.shape[1:] == darks.shape[1:] == projections.shape[1:]):
        raise ValueError(f"{source}: frame shapes differ (projections {projections.shape}, flats {flats.shape}, "
                         f"darks {darks.shape})")
    units = pint.get_application_registry()
    keys = [ImageKey.DARK_FIELD] * len(darks) + [ImageKey.FLAT_FIELD] * len(flats) \
        + [ImageKey.PROJECTION] * len(projections)
    nx = NXtomo()
    nx.title = sample_name or Path(source).stem
    nx.sample.name = sample_name or Path(source).stem
    nx.instrument.source = NXsource(node_name="source", parent=nx.instrument)  # not ESRF's default
    detector = nx.instrument.detector
    detector.data = np.concatenate([darks, flats, projections]).astype(projections.dtype, copy=False)
    detector.image_key_control = keys
    nx.sample.rotation_angle = np.concatenate([np.full(len(darks) + len(flats), angles[0]), angles]) * units.degree
    if energy_kev is not None:
        nx.instrument.beam.incident_energy = float(energy_kev) * units.keV
    if pixel_size_m is not None:
        detector.x_pixel_size = detector.y_pixel_size = float(pixel_size_m) * units.meter
    if distance_m is not None:
        detector.distance = float(distance_m) * units.meter
    NXtomo.check_consistency(nx_tomo=nx, raises_error=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    nx.save(file_path=str(output), data_path=entry, overwrite=overwrite)
    return output
