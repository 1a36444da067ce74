"""Peak memory of the tomopy route (``algorithm="gridrec"``) with and without ``max_memory`` (needs tomopy).

    PYTHONPATH=... LD_LIBRARY_PATH=... .venv/bin/python benchmarks/tomopy_memory.py [MAX_MEMORY_BYTES]

(tomopy is not on PyPI: docs/recon.md says how to build it and put it on the path.) Reconstructs 64 random
sinograms of 720 angles × 1024 columns in one process and prints the peak RSS (``getrusage``) beside the
input's and the output's sizes: run it once without and once with a budget, each in a fresh process.
"""

import resource
import sys
import time

import numpy as np

from tomobluesky import recon

slices, angles, columns = 64, 720, 1024
sinograms = np.random.default_rng(0).random((slices, angles, columns), dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
budget = float(sys.argv[1]) if len(sys.argv) > 1 else None
start = time.perf_counter()
volume = recon.reconstruct(sinograms, np.linspace(0, np.pi, angles, endpoint=False), columns / 2,
                           sinogram_order=True, algorithm="gridrec", ncore=2, max_memory=budget)
print(f"max_memory={budget} input {sinograms.nbytes / 2**20:.0f} MB output {volume.nbytes / 2**20:.0f} MB; "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
      f"(before the call {before:.0f} MB), {time.perf_counter() - start:.1f} s")
