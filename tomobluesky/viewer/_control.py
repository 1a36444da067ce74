"""Steering a live reconstruction from the page: the request, checked, kept in Tiled.

The channel is the catalogue itself, so it works wherever the reconstruction
runs (in the RunEngine's process or in a Kafka worker on another host): the
viewer writes the request as the metadata of ``live/<scan uid>/control``, and
the reconstruction reads it back at each preview with
``TiledSink.live_request(scan_uid)``. Each request carries a sequence number,
so a sink hands on each request once.

A request is ``{"row": int, "center": float}``, either key optional: the
detector row of the live axial slice, and the centre of rotation in detector
columns (pixel centres at integers).
"""

from __future__ import annotations

import math
import time

CONTROL = "control"  # the child of live/<scan uid> that holds the request
FIELDS = ("row", "center")


class BadControl(ValueError):
    """A control request that cannot be applied; the message says why."""


def detector_shape(preview_metadata: dict, slices: dict) -> tuple[int, int]:
    """(rows, columns) of the scan's detector: from the preview's metadata when it says, else from the
    live slices' shapes times their binning (the vertical slices are detector rows high, the axial one
    detector columns wide)."""
    given = preview_metadata.get("detector_shape")
    if isinstance(given, (list, tuple)) and len(given) >= 2 and all(_whole(n) and n > 0 for n in given[-2:]):
        return int(given[-2]), int(given[-1])
    binning = preview_metadata.get("binning", 1)
    binning = int(binning) if _whole(binning) and binning > 0 else 1
    rows = slices.get("vertical_x", (0, 0))[0] * binning
    columns = slices.get("axial", (0, 0))[-1] * binning
    return int(rows), int(columns)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_request(body, rows: int, columns: int) -> dict:
    """The request in ``body`` (decoded JSON), checked against a detector of ``rows`` × ``columns``."""
    if not isinstance(body, dict):
        raise BadControl('send a JSON object such as {"row": 100} or {"center": 1023.5}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadControl(f"unknown field {str(unknown[0])[:40]!r}: a request sets 'row' and/or 'center'")
    request = {name: body[name] for name in FIELDS if body.get(name) is not None}
    if not request:
        raise BadControl("nothing to do: give 'row' and/or 'center'")
    if "row" in request:
        row = request["row"]
        if not _whole(row) or not 0 <= row < rows:
            raise BadControl(f"row must be a whole number from 0 to {rows - 1} (the detector's rows), not {row!r:.40}")
    if "center" in request:
        center = request["center"]
        if not _number(center) or not math.isfinite(center) or not -0.5 <= center <= columns - 0.5:
            raise BadControl(f"center must be a finite number of columns from -0.5 to {columns - 0.5} "
                             f"(the detector's width), not {center!r:.40}")
        request["center"] = float(center)
    return request


def stored(request: dict, previous: dict | None) -> dict:
    """The metadata to store for ``request``: it, a sequence number one above the previous one's, a time."""
    seq = previous.get("seq") if previous else 0
    seq = seq if _whole(seq) and seq >= 0 else 0
    return {**request, "seq": seq + 1, "time": time.time()}
