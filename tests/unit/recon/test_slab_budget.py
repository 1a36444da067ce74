"""``reconstruct(max_memory=…)``: slabs as large as the budget allows, in whole slice pairs.

``reconstruct`` budgets a slice as its working set in 4-byte values: the sinogram's spectra (4 values per
sinogram sample) and the image (2 per pixel). A slab is the largest even number of slices that fits, never
fewer than one pair; ``progress`` is called once per slab, so its calls show the slab height.
"""

import numpy as np
import pytest

from tomobluesky import recon

SLICES, ANGLES, COLUMNS = 8, 8, 16
PER_SLICE = 4 * (ANGLES * COLUMNS * 4 + COLUMNS * COLUMNS * 2)  # bytes


@pytest.mark.parametrize("budget, slab", [(4 * PER_SLICE, 4), (4 * PER_SLICE - 1, 2), (6 * PER_SLICE, 6),
                                          (7 * PER_SLICE + PER_SLICE // 2, 6), (1, 2)])
def test_the_slab_is_the_largest_whole_number_of_pairs_the_budget_holds(budget, slab):
    rng = np.random.default_rng(3)
    sinograms = rng.random((SLICES, ANGLES, COLUMNS), dtype=np.float32)
    theta = np.linspace(0, np.pi, ANGLES, endpoint=False)
    calls = []
    volume = recon.reconstruct(sinograms, theta, sinogram_order=True, max_memory=budget,
                               progress=lambda done, total: calls.append((done, total)))
    assert calls == [(min(stop, SLICES), SLICES) for stop in range(slab, SLICES + slab, slab)]
    whole = recon.reconstruct(sinograms, theta, sinogram_order=True)
    # the same pairs in every slab plan; only finufft's order of summing moves with its threads per part
    np.testing.assert_allclose(volume, whole, rtol=0, atol=1e-5 * np.abs(whole).max())
