"""The Shepp–Logan and cosine windows on the tooth: same cost? which is closer to the object?

    .venv/bin/python benchmarks/tooth_windows.py [--repeats 5] [--threads 2]

The tooth (181 projections over 180°, 640 columns, 2 rows) has no ground truth, so it is
used twice:

* cost: both windows reconstruct the real tooth sinograms (the 2 rows tiled to 64 slices,
  so that a timing is more than noise), best of ``--repeats``;
* quality: a tooth-shaped object with a known truth. The truth is the tooth's own
  reconstruction (direct FBP, ramp filter, no window, negatives clipped to 0, the circle
  only); it is projected again at the scan's 181 angles (``recon.project``), given the
  scan's photon noise (Poisson at the measured flat-minus-dark counts of each column), and
  reconstructed with each window. RMSE and SSIM (after a least-squares gain) inside 95 %
  of the circle, as benchmarks/recon.py scores the phantom; noise-free numbers beside.
"""

from __future__ import annotations

import argparse
import os

import h5py
import numpy as np

from _timing import best_of

from tomobluesky import recon
from tomobluesky.recon.testing import project, rmse_in_circle, ssim_in_circle

TOOTH = os.environ.get("TOMOBLUESKY_TOOTH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                          "tooth.h5"))
WINDOWS = ("shepp", "cosine")


def load(path):
    with h5py.File(path) as f:
        data, flats, darks = (f[name][()] for name in ("/exchange/data", "/exchange/data_white", "/exchange/data_dark"))
        theta = np.radians(f["/exchange/theta"][()])
    counts = (flats.mean(axis=0) - darks.mean(axis=0)).mean(axis=0)  # photons per column (flat − dark)
    sinograms = np.ascontiguousarray(recon.minus_log(recon.normalize(data, flats, darks)).swapaxes(0, 1))
    return sinograms, theta, counts


def truth_object(sinograms, theta, center):
    """The tooth as a known object: unwindowed FBP, attenuation clipped at 0, zero outside the circle."""
    volume = recon.reconstruct(sinograms, theta, center, sinogram_order=True, algorithm="fbp", filter_name="ramp")
    n = volume.shape[-1]
    return np.where(recon.circle_mask(n, 0.95)[None], np.clip(volume, 0, None), 0).astype(np.float32)


def noisy(sinograms, counts, rng):
    """Photon noise of the scan: Poisson counts at each column's flat level, back to −log."""
    expected = counts[None, None, :] * np.exp(-sinograms.astype(np.float64))
    measured = np.maximum(rng.poisson(expected), 1)
    return (-np.log(measured / counts[None, None, :])).astype(np.float32)


def quality(volume, truth):
    return (float(np.mean([rmse_in_circle(v, t) for v, t in zip(volume, truth)])),
            float(np.mean([ssim_in_circle(v, t) for v, t in zip(volume, truth)])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tooth", default=TOOTH)
    args = parser.parse_args(argv)
    sinograms, theta, counts = load(args.tooth)
    center = recon.find_center(sinograms, theta, method="auto").center
    print(f"tooth {sinograms.shape}, centre {center:.2f}, flat counts {counts.min():.0f}..{counts.max():.0f}; "
          f"load {os.getloadavg()[0]:.2f}")
    slab = np.ascontiguousarray(np.tile(sinograms, (32, 1, 1)))
    for window in WINDOWS:
        seconds, _ = best_of(lambda: recon.reconstruct(slab, theta, center, sinogram_order=True, filter_name=window,
                                                       ncore=args.threads), args.repeats)
        print(f"cost  {window:7s} {len(slab)} slices of 640^2: {seconds:.3f} s (best of {args.repeats})")
    truth = truth_object(sinograms, theta, center)
    n = truth.shape[-1]
    clean = project(truth, theta)  # the object's axis sits at (n − 1)/2
    rng = np.random.default_rng(0)
    for label, data in (("noise-free", clean), ("scan noise", noisy(clean, counts, rng))):
        for window in WINDOWS:
            volume = recon.reconstruct(data, theta, (n - 1) / 2, sinogram_order=True, filter_name=window)
            rmse, ssim = quality(volume, truth)
            print(f"{label:10s} {window:7s} RMSE {rmse:.5f}  SSIM {ssim:.3f}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
