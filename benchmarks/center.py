"""Centre-of-rotation timing: find_center at beamline widths, and the tooth.

    .venv/bin/python benchmarks/center.py [--repeats 3] [--method auto]

Cases: the Shepp-Logan phantom's exact sinograms (``project_shepp_logan``)
plus 1 % Gaussian noise, 1500 angles over 180°, the axis 6.3 columns right of
the middle, 1024 and 2048 columns wide, 3/5/8 detector rows passed to
``find_center`` (what the stop path hands it). Then the tooth scan (181
angles, 2 rows of 640 columns). Times are the best of ``--repeats`` runs of
the whole call; the error is the answer minus the true axis.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from _timing import best_of

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan

TOOTH = Path(os.environ.get("TOMOBLUESKY_TOOTH", Path(__file__).resolve().parents[2] / "shared" / "data" / "tooth.h5"))
OFFSET = 6.3


def phantom_rows(rows, width, theta, center, rng):
    sino = project_shepp_logan(rows, width, theta, center=center)
    return sino + rng.normal(0, 0.01 * float(sino.max()), sino.shape).astype(np.float32)


def load_tooth():
    import h5py

    with h5py.File(TOOTH, "r") as f:
        data, flats, darks = (f[f"/exchange/{k}"][...] for k in ("data", "data_white", "data_dark"))
        theta = np.radians(f["/exchange/theta"][...])
    sinograms = np.ascontiguousarray(np.swapaxes(recon.minus_log(recon.normalize(data, flats, darks, averaging="median")), 0, 1))
    return sinograms, theta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="auto", choices=("vo", "sharpness", "auto"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, 1500, endpoint=False)
    recon.find_center(phantom_rows(2, 128, theta[::10], 64.0, rng), theta[::10])  # imports and FFT plans
    print(f"find_center(method={args.method!r}), best of {args.repeats}; load: {os.getloadavg()[0]:.2f}")
    print(f"{'width':>6} {'angles':>6} {'rows':>4} {'time s':>7} {'error px':>9} {'confidence':>10}")
    for width in (1024, 2048):
        center = (width - 1) / 2 + OFFSET
        for rows in (3, 5, 8):
            sino = phantom_rows(rows, width, theta, center, rng)
            seconds, found = best_of(lambda: recon.find_center(sino, theta, method=args.method), args.repeats)
            print(f"{width:6d} {len(theta):6d} {rows:4d} {seconds:7.3f} {found.center - center:+9.3f} "
                  f"{found.confidence:10.2f}")
    if TOOTH.exists():
        sino, tooth_theta = load_tooth()
        seconds, found = best_of(lambda: recon.find_center(sino, tooth_theta, method=args.method), args.repeats)
        print(f"tooth ({sino.shape[0]} rows, {sino.shape[1]} angles, {sino.shape[2]} columns): "
              f"{seconds:.3f} s, centre {found.center:.2f}, confidence {found.confidence:.2f}")
    else:
        print(f"tooth scan not found at {TOOTH}")


if __name__ == "__main__":
    main()
