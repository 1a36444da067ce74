"""Data Exchange, the APS layout for tomography in HDF5: where frames and angles live, and what the angles mean.

The simulated camera writes it, the replay source and the stop path read it.
"""

from __future__ import annotations

import math

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
