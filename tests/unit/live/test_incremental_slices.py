"""Incremental slices against an analytic object: a disk of known attenuation."""

import numpy as np
import pytest

from tomobluesky.live._slices import IncrementalSlices, ramp_filter


def disk_projection(columns, rows, angle_deg, *, mu=0.01, radius=20.0, x0=0.0, y0=0.0, center=None):
    """Exact line integrals of a disk (same in every detector row)."""
    center = (columns - 1) / 2 if center is None else center
    theta = np.radians(angle_deg)
    t = np.arange(columns) - center - (x0 * np.cos(theta) + y0 * np.sin(theta))
    p = 2 * mu * np.sqrt(np.clip(radius**2 - t**2, 0, None))
    return np.repeat(p[None], rows, axis=0).astype(np.float32)


@pytest.mark.parametrize("center_offset", [0.0, 7.0])
def test_full_scan_recovers_the_disk_attenuation(center_offset):
    n, rows, angles = 96, 4, np.linspace(0, 180, 180, endpoint=False)
    center = (n - 1) / 2 + center_offset
    s = IncrementalSlices(rows, n, center=center, num_angles=len(angles))
    for a in angles:
        s.add(disk_projection(n, rows, a, mu=0.01, radius=20, center=center), a)
    inside = s.axial[n // 2 - 10:n // 2 + 10, n // 2 - 10:n // 2 + 10]
    assert inside.mean() == pytest.approx(0.01, rel=0.05)
    outside = s.axial[:10, :10]
    assert abs(outside.mean()) < 0.001
    # the vertical slices through the axis cut the disk along its diameter in every row
    assert s.vertical_x[:, n // 2 - 10:n // 2 + 10].mean() == pytest.approx(0.01, rel=0.05)
    assert s.vertical_y[:, n // 2 - 10:n // 2 + 10].mean() == pytest.approx(0.01, rel=0.05)


def test_an_off_axis_disk_lands_where_it_is():
    n, angles = 96, np.linspace(0, 180, 180, endpoint=False)
    s = IncrementalSlices(1, n, num_angles=len(angles))
    for a in angles:
        s.add(disk_projection(n, 1, a, radius=8, x0=20, y0=10), a)
    mask = s.axial > 0.5 * s.axial.max()
    row, col = (np.argwhere(mask).mean(axis=0))
    # x to the right of the axis, y up (the image's row index grows downwards)
    assert abs(col - ((n - 1) / 2 + 20)) <= 1 and abs(row - ((n - 1) / 2 - 10)) <= 1


def test_partial_scans_sharpen_monotonically():
    n, angles = 64, np.linspace(0, 180, 120, endpoint=False)
    s = IncrementalSlices(1, n, num_angles=len(angles))
    truth = np.zeros((n, n))
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    truth[xx**2 + yy**2 <= 15**2] = 0.01
    errors = []
    for i, a in enumerate(angles):
        s.add(disk_projection(n, 1, a, radius=15), a)
        if (i + 1) % 30 == 0:
            errors.append(np.abs(s.axial - truth).mean())
    assert errors == sorted(errors, reverse=True)


def test_moving_the_axial_slice_and_bad_input():
    s = IncrementalSlices(4, 32)
    s.add(np.ones((4, 32)), 0.0)
    s.set_row(1)
    assert s.row == 1 and not s.axial.any()
    with pytest.raises(ValueError, match="outside"):
        s.set_row(9)
    with pytest.raises(ValueError, match="unknown filter"):
        ramp_filter(32, "hann-ish")
