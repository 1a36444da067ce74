"""Side-by-side reconstruction benchmark: tomobluesky.recon against the peers that import.

    .venv/bin/python benchmarks/recon.py [--quick] [--threads 2]

Cases (parallel beam, angles over 180° without the end point):
  A. 256 slices of 256², 360 angles (the 3-D Shepp-Logan of ``shepp_logan_3d``);
  B. one 1024² slice, 1500 angles.
Data: the phantom's exact line integrals (``project_shepp_logan``, each detector
column averaging 4 rays across its width); truth: the phantom averaged over each
pixel's area. Quality: RMSE and SSIM inside the reconstruction circle (95 % of
the radius) after a least-squares gain fit, averaged over 16 slices spread
through case A. Every tool gets the centre that is right for its own convention,
and its output's orientation is matched to ours once per tool (the best of the
8 flips/rotations on one slice, printed), so that a convention slip shows up as
a printed choice, not as a bad score. Fast tools: best of 3 runs; slow peers: 1.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from _timing import best_of

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan, rmse_in_circle, ssim_in_circle

DIHEDRAL = {
    "identity": lambda a: a, "rot90": lambda a: np.rot90(a, 1, axes=(-2, -1)),
    "rot180": lambda a: np.rot90(a, 2, axes=(-2, -1)), "rot270": lambda a: np.rot90(a, 3, axes=(-2, -1)),
    "flipud": lambda a: a[..., ::-1, :], "fliplr": lambda a: a[..., :, ::-1],
    "transpose": lambda a: np.swapaxes(a, -1, -2), "antitranspose": lambda a: np.rot90(a, 2, axes=(-2, -1)).swapaxes(-1, -2),
}


# -- the tools: each takes (sinograms (slices, angles, n), theta, case) and returns (slices, n, n) ------------

def ours(filter_name):
    def run(sino, theta, case, threads):
        return recon.reconstruct(sino, theta, (sino.shape[-1] - 1) / 2, filter_name=filter_name, ncore=threads, sinogram_order=True)
    return run


def tomopy_gridrec(pad):
    def run(sino, theta, case, threads):
        import tomopy

        n = sino.shape[-1]
        tomo = np.swapaxes(sino, 0, 1)
        npad = n // 2 if pad else 0  # 2× width
        if npad:
            tomo = np.pad(tomo, ((0, 0), (0, 0), (npad, npad)), mode="edge")
        rec = tomopy.recon(tomo, theta, center=(n - 1) / 2 + npad, algorithm="gridrec", ncore=threads)
        return rec[:, npad:npad + n, npad:npad + n] if npad else rec
    return run


def astra_fbp(sino, theta, case, threads):
    import astra

    n = sino.shape[-1]
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n, theta)  # ASTRA's axis: the detector's middle, (n−1)/2
    projector = astra.create_projector("linear", proj_geom, vol_geom)
    out = np.empty((len(sino), n, n), np.float32)
    for k, s in enumerate(sino):
        sid = astra.data2d.create("-sino", proj_geom, s)
        rid = astra.data2d.create("-vol", vol_geom)
        cfg = astra.astra_dict("FBP")
        cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=projector,
                   option={"FilterType": "Ram-Lak"})
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg)
        out[k] = astra.data2d.get(rid)
        astra.algorithm.delete(alg)
        astra.data2d.delete([sid, rid])
    astra.projector.delete(projector)
    return out


def algotom_rec(kind):
    def run(sino, theta, case, threads):
        from algotom.rec import reconstruction as rec

        n = sino.shape[-1]
        if kind == "fbp":
            return np.stack([rec.fbp_reconstruction(s, (n - 1) / 2, angles=theta, apply_log=False, gpu=False,
                                                    ncore=threads) for s in sino])
        # algotom's DFI assumes the angles end at 180°: give it the 0..180° inclusive grid it expects
        return np.stack([rec.dfi_reconstruction(s, (n - 1) / 2, angles=None, apply_log=False, ncore=threads)
                         for s in case["sino_dfi"]])
    return run


def skimage_iradon(sino, theta, case, threads):
    from skimage.transform import iradon

    # iradon puts the axis at column n // 2: it reads the same phantom projected about that column
    return np.stack([iradon(s.T, np.degrees(theta), filter_name="ramp", circle=True, output_size=s.shape[-1])
                     for s in case["sino_n_over_2"]])


def _peers():
    """Ours, then each peer whose package imports here."""
    import importlib

    def importable(module):
        try:
            importlib.import_module(module)
        except ImportError:
            return False
        return True

    found = [("ours nufft shepp", ours("shepp"), 3), ("ours nufft cosine", ours("cosine"), 3)]
    peers = [
        ("tomopy", "tomopy: not importable here (not on PyPI); reference numbers in docs/benchmarks.md",
         lambda: [("tomopy gridrec unpadded", tomopy_gridrec(False), 3),
                  ("tomopy gridrec padded 2x", tomopy_gridrec(True), 3)]),
        ("astra", "astra-toolbox: not installed", lambda: [("astra CPU FBP", astra_fbp, 1)]),
        ("algotom", "algotom: not installed",
         lambda: [("algotom FBP", algotom_rec("fbp"), 1), ("algotom DFI", algotom_rec("dfi"), 1)]),
        ("skimage", "scikit-image: not installed", lambda: [("skimage iradon", skimage_iradon, 1)]),
    ]
    for module, missing, entries in peers:
        if not importable(module):
            print(missing)
        else:
            found += entries()
    return found


def make_case(name, slices, n, angles, metric_slices):
    theta = np.linspace(0, np.pi, angles, endpoint=False)
    two_d = slices is None
    sino = project_shepp_logan(slices, n, theta)
    truth = recon.shepp_logan_3d(slices, n, supersample=4) if not two_d else recon.shepp_logan(n, supersample=4)[None]
    sino = sino[None] if two_d else sino
    theta_dfi = np.linspace(0, np.pi, angles)
    dfi = project_shepp_logan(slices, n, theta_dfi)
    return {"name": name, "theta": theta, "sino": sino, "truth": truth, "metric_slices": metric_slices,
            "sino_dfi": dfi[None] if two_d else dfi,
            "sino_n_over_2": (lambda s: s[None] if two_d else s)(project_shepp_logan(slices, n, theta, center=n // 2))}


def score(volume, case, orient):
    idx, truth = case["metric_slices"], case["truth"]
    fix = DIHEDRAL[orient]
    ssim = np.mean([ssim_in_circle(fix(volume[i]), truth[i]) for i in idx])
    rmse = np.mean([rmse_in_circle(fix(volume[i]), truth[i]) for i in idx])
    return float(ssim), float(rmse)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="32 slices in case A, case B at 512²/750")
    parser.add_argument("--only", default="", help="comma-separated tool name substrings")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    slices, big, big_angles = (32, 512, 750) if args.quick else (256, 1024, 1500)
    cases = [make_case(f"A: {slices} x 256^2, 360 angles", slices, 256, 360, list(range(0, slices, max(1, slices // 16)))),
             make_case(f"B: 1 x {big}^2, {big_angles} angles", None, big, big_angles, [0])]
    tools = [t for t in _peers() if not args.only or any(s in t[0] for s in args.only.split(","))]
    for case in cases:
        slices_n = case["sino"].shape[0]
        print(f"\n## {case['name']}  (threads={args.threads})")
        print(f"{'tool':28s} {'time s':>8s} {'slices/s':>9s} {'RMSE':>8s} {'SSIM':>6s}  orientation")
        for name, fn, repeats in tools:
            try:
                seconds, volume = best_of(lambda: fn(case["sino"], case["theta"], case, args.threads), repeats)
            except Exception as err:  # a peer failing must not hide the others
                print(f"{name:28s} failed: {type(err).__name__}: {err}")
                continue
            probe = case["metric_slices"][len(case["metric_slices"]) // 2]
            orient = max(DIHEDRAL, key=lambda k: ssim_in_circle(DIHEDRAL[k](volume[probe]), case["truth"][probe]))
            ssim, rmse = score(np.asarray(volume, np.float32), case, orient)
            print(f"{name:28s} {seconds:8.3f} {slices_n / seconds:9.1f} {rmse:8.4f} {ssim:6.3f}  {orient}"
                  f"{'' if repeats == 1 else f'  (best of {repeats})'}")


if __name__ == "__main__":
    main()
