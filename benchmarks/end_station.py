"""The cost of the RunEngine's path through each end station: the same step and fly scans on the
ophyd-async devices (``tomobluesky.devices.oa``, the profile's) and on the older ophyd ones.

    .venv/bin/python benchmarks/end_station.py [--projections 360] [--size 128] [--repeat 3] [--json out.json]

A scan is ``tomo_scan`` / ``tomo_fly_scan`` with 10 darks and 10 flats of a noiseless phantom of
``size`` x ``size`` pixels, into a fresh Data Exchange file, with no subscriber: what is timed is the
plan, the devices, the documents and the HDF5 writes. The fly scan rotates at 1e6 deg/s, so it measures
the collection path, not the simulated motion. Reported: the best of ``repeat`` runs, wall seconds and
this process's CPU seconds per frame (all threads), which a loaded machine moves much less than wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from bluesky import RunEngine

from tomobluesky.devices import PhantomSource, make_sim_beamline, oa
from tomobluesky.plans import tomo_fly_scan, tomo_scan

STATIONS = {"ophyd-async": oa.make_sim_beamline, "ophyd": make_sim_beamline}


def _one_scan(RE, station, fly: bool, projections: int, size: int) -> tuple[float, float]:
    source = PhantomSource(n_slices=size, n_columns=size, noise=False)
    with tempfile.TemporaryDirectory() as directory:
        camera, *stages = STATIONS[station](source, directory)
        plan = tomo_fly_scan if fly else tomo_scan
        extra = {"velocity": 1e6} if fly else {}
        wall, cpu = time.perf_counter(), time.process_time()
        RE(plan([camera], *stages, num_projections=projections, num_darks=10, num_flats=10, **extra))
        return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projections", type=int, default=360, help="projections per scan (default 360)")
    parser.add_argument("--size", type=int, default=128, help="detector rows and columns (default 128)")
    parser.add_argument("--repeat", type=int, default=3, help="scans per case; the best is reported (default 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    RE = RunEngine({})
    frames = args.projections + 20
    results = {}
    for station in STATIONS:
        for fly in (False, True):
            runs = [_one_scan(RE, station, fly, args.projections, args.size) for _ in range(args.repeat)]
            wall, cpu = min(runs)
            name = f"{station} {'fly' if fly else 'step'}"
            results[name] = {"wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 1),
                             "cpu_ms_per_frame": round(1e3 * cpu / frames, 3)}
            print(f"{name:18s} {wall:7.3f} s  {frames / wall:8.1f} frames/s  {1e3 * cpu / frames:7.3f} ms CPU/frame",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
