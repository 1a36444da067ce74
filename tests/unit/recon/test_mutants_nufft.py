"""The Fourier route (``_nufft``) against filtered backprojection written out from its definition.

FBP with band-limited interpolation along the detector: each zero-padded row's DFT times the windowed
ramp, read back by the inverse Fourier series at the fractional column where the ray through a pixel
meets the detector (centre + x cos θ + y sin θ, x = j − (n−1)/2, y = (n−1)/2 − i), summed over the views
with weight π / views. The NUFFT computes exactly this sum (up to its ``eps``), so with ``eps=1e-6`` the
two agree to float32 precision: every slice of a packed pair, every centre, odd and even sizes.
An even-length row's Nyquist bin (f = −½, whose +½ partner the DFT lacks) is left out of the sum: its
band-limited reading is ambiguous, and in the NUFFT it made each image complex (see the last test).
The tests use small random sinograms, uneven angles and off-middle axes, so that no symmetry hides
a wrong sign, pairing or phase.
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._filters import padded_length, ramp_response
from tomobluesky.recon._nufft import cached_plan, clear_plan_cache, nufft_fbp, polar_points

EPS = 1e-6


def fbp_by_definition(sinogram, theta, center, filter_name, pad=True):
    """One (angles, n) sinogram → (n, n): Σ_views π/views · Re q_θ(center + x cos θ + y sin θ), with
    q_θ(u) = 1/L Σ_k H[k] P_θ[k] exp(2πi f_k u) and P_θ the DFT of the row padded to L."""
    angles, n = sinogram.shape
    length = padded_length(n, pad)
    f = np.fft.fftfreq(length)
    spectra = np.fft.fft(sinogram.astype(np.float64), n=length, axis=-1) * ramp_response(length, filter_name)
    if length % 2 == 0:
        spectra[:, length // 2] = 0  # the Nyquist bin
    coords = np.arange(n) - (n - 1) / 2
    x, y = coords[None, :], -coords[:, None]
    image = np.zeros((n, n))
    for th, spectrum in zip(theta, spectra):
        u = center + x * np.cos(th) + y * np.sin(th)
        image += np.real(np.exp(2j * np.pi * u[..., None] * f) @ spectrum) / length
    return image * np.pi / angles


def _case(rng, slices, angles, n, turn=np.pi):
    theta = np.sort(rng.uniform(0, turn, angles))
    sinograms = rng.random((slices, angles, n)).astype(np.float32)
    return sinograms, theta


def _assert_matches(volume, sinograms, theta, centers, filter_name, pad=True):
    assert volume.shape == sinograms.shape[:1] + sinograms.shape[2:] * 2 and volume.dtype == np.float32
    for image, sino, c in zip(volume, sinograms, centers):
        want = fbp_by_definition(sino, theta, c, filter_name, pad)
        np.testing.assert_allclose(image, want, rtol=0, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("filter_name", recon.FILTERS)
@pytest.mark.parametrize("n", [16, 17])
def test_every_slice_of_odd_count_with_its_own_centre(n, filter_name):
    """Five slices (two packed pairs and one alone), each with its own axis: the split of a packed
    spectrum into its two slices and the phase of each centre."""
    rng = np.random.default_rng(n)
    sinograms, theta = _case(rng, 5, 11, n)
    centers = (n - 1) / 2 + np.array([-1.7, 0.4, 2.25, -0.6, 1.1])
    volume = nufft_fbp(sinograms, theta, centers, filter_name=filter_name, eps=EPS)
    _assert_matches(volume, sinograms, theta, centers, filter_name)


@pytest.mark.parametrize("n", [16, 17])
def test_one_centre_shared_by_every_slice(n):
    rng = np.random.default_rng(100 + n)
    sinograms, theta = _case(rng, 3, 9, n)
    centers = np.full(3, (n - 1) / 2 + 1.35)
    volume = nufft_fbp(sinograms, theta, centers, filter_name="cosine", eps=EPS)
    _assert_matches(volume, sinograms, theta, centers, "cosine")


def test_pairs_sharing_a_centre_that_the_next_pair_does_not():
    """Both slices of a pair on one axis (weighted as packed), the next pair on another."""
    rng = np.random.default_rng(7)
    sinograms, theta = _case(rng, 4, 10, 18)
    centers = np.array([7.2, 7.2, 9.9, 9.9])
    volume = nufft_fbp(sinograms, theta, centers, filter_name="hann", eps=EPS)
    _assert_matches(volume, sinograms, theta, centers, "hann")


@pytest.mark.parametrize("slices, batch_pairs, calls", [(5, 1, [(2, 5), (4, 5), (5, 5)]), (7, 2, [(4, 7), (7, 7)])])
def test_batches_progress_and_out(slices, batch_pairs, calls):
    """Slice pairs in batches: the last batch holds fewer (a plan for another count, an odd slice
    alone), progress once per batch, the result written into ``out``."""
    rng = np.random.default_rng(3)
    sinograms, theta = _case(rng, slices, 8, 14, turn=2 * np.pi)
    centers = 6.0 + rng.uniform(-0.5, 0.5, slices)
    seen = []
    out = np.full((slices, 14, 14), np.nan, np.float32)
    got = nufft_fbp(sinograms, theta, centers, filter_name="cosine", eps=EPS, batch_pairs=batch_pairs, out=out,
                    progress=lambda done, total: seen.append((done, total)))
    assert got is out and seen == calls
    _assert_matches(out, sinograms, theta, centers, "cosine")


def test_a_kept_plan_is_not_reused_for_other_angles_precision_or_padding():
    """The plan is kept between calls; a call with other angles, another ``eps`` or another padding
    must not reuse it."""
    rng = np.random.default_rng(11)
    sinograms, theta = _case(rng, 2, 9, 16)
    other = np.sort(rng.uniform(0, np.pi, 9))
    centers = np.array([7.1, 8.3])
    clear_plan_cache()
    nufft_fbp(sinograms, theta, centers, filter_name="cosine", eps=EPS)
    _assert_matches(nufft_fbp(sinograms, other, centers, filter_name="cosine", eps=EPS), sinograms, other,
                    centers, "cosine")
    coarse = nufft_fbp(sinograms, other, centers, filter_name="cosine", eps=1e-1)  # keeps a coarse plan
    fine = nufft_fbp(sinograms, other, centers, filter_name="cosine", eps=EPS)
    assert not np.allclose(coarse, fine, rtol=0, atol=2e-5 * np.abs(fine).max())
    _assert_matches(fine, sinograms, other, centers, "cosine")
    _assert_matches(nufft_fbp(sinograms, other, centers, filter_name="cosine", eps=EPS, pad=2.0), sinograms,
                    other, centers, "cosine", pad=2.0)


def test_default_precision_is_a_percent_of_the_exact_sum():
    """The default ``eps`` (1e-2) is an error of about a percent of the image, no more: what the speed
    is bought with (docs/recon.md)."""
    rng = np.random.default_rng(5)
    sinograms, theta = _case(rng, 2, 40, 32)
    centers = np.array([15.5, 16.25])
    volume = nufft_fbp(sinograms, theta, centers, filter_name="cosine")
    for image, sino, c in zip(volume, sinograms, centers):
        want = fbp_by_definition(sino, theta, c, "cosine")
        rel = np.sqrt(np.mean((image - want) ** 2)) / np.sqrt(np.mean(want ** 2))
        assert 1e-5 < rel < 3e-2, rel


def test_reconstruct_passes_its_options_to_the_nufft():
    """Through the public entry point: projections order, centre per slice, window, padding, eps."""
    rng = np.random.default_rng(21)
    sinograms, theta = _case(rng, 3, 12, 15)
    centers = np.array([6.5, 7.75, 6.0])
    volume = recon.reconstruct(np.swapaxes(sinograms, 0, 1), theta, centers, filter_name="hann", pad=1.7,
                               eps=EPS, batch_pairs=1, ncore=1)
    _assert_matches(volume, sinograms, theta, centers, "hann", pad=1.7)


def test_polar_points_lie_on_the_lines_of_the_fourier_slice_theorem():
    """Point (row, column) of angle θ and frequency f is 2πf (−sin θ, cos θ): rows grow downwards."""
    theta = np.array([0.0, np.pi / 2, 0.3])
    rows, cols = polar_points(theta, 8)
    f = np.fft.fftfreq(8)
    np.testing.assert_allclose(rows.reshape(3, 8), -2 * np.pi * np.sin(theta)[:, None] * f, atol=1e-6)
    np.testing.assert_allclose(cols.reshape(3, 8), 2 * np.pi * np.cos(theta)[:, None] * f, atol=1e-6)
    assert rows.dtype == cols.dtype == np.float32


@pytest.mark.parametrize("filter_name", recon.FILTERS)
def test_a_slice_does_not_depend_on_the_slice_it_is_packed_with(filter_name):
    """Two slices ride as the real and imaginary parts of one NUFFT; each image must be its own slice's
    alone. Before the fix, with the ramp and Shepp-Logan windows (nonzero at the Nyquist frequency) and an
    even padded length, 13-17 % of a random slice's image came from its partner (about 1 % on a noisy
    phantom)."""
    rng = np.random.default_rng(1)
    n = 16  # padded to 24 columns: an even length with a Nyquist bin
    theta = np.sort(rng.uniform(0, np.pi, 11))
    pair = rng.random((2, 11, n)).astype(np.float32)
    together = nufft_fbp(pair, theta, [7.5, 7.5], filter_name=filter_name, eps=EPS)
    for k in range(2):
        alone = nufft_fbp(pair[k:k + 1], theta, [7.5], filter_name=filter_name, eps=EPS)[0]
        np.testing.assert_allclose(together[k], alone, rtol=0, atol=1e-5 * np.abs(alone).max())


def test_the_plan_is_kept_for_the_same_geometry_and_replaced_for_another():
    """Sorting the points costs ~0.15 s at scan sizes, once per slab otherwise (docs/recon.md)."""
    theta = np.linspace(0, np.pi, 9, endpoint=False)
    clear_plan_cache()
    first = cached_plan(np, 16, 2, EPS, None, theta, 24)
    assert cached_plan(np, 16, 2, EPS, None, theta.copy(), 24) is first
    assert cached_plan(np, 16, 1, EPS, None, theta, 24) is not first


# -- a slab in parts on threads (nufft_fbp_threads): what the CPU route of reconstruct runs ------------------------

@pytest.mark.parametrize("slices, threads", [(7, 3), (8, 2), (5, 8), (6, 1)])
def test_parts_on_threads_give_every_slice_of_the_single_call(slices, threads):
    """Whole pairs per part (7 slices on 3 threads: 2, 2 and 3 slices), more threads than pairs, one thread:
    every slice as the single call makes it, each against FBP written from its definition too."""
    from tomobluesky.recon._nufft import nufft_fbp_threads

    rng = np.random.default_rng(slices)
    n = 12
    theta = np.sort(rng.uniform(0, np.pi, 13))
    sinograms = rng.random((slices, 13, n)).astype(np.float32)
    centers = (n - 1) / 2 + rng.uniform(-1.5, 1.5, slices)
    single = nufft_fbp(sinograms, theta, centers, eps=EPS)
    out = np.full((slices, n, n), np.nan, dtype=np.float32)
    assert nufft_fbp_threads(sinograms, theta, centers, threads=threads, out=out, eps=EPS) is out
    np.testing.assert_allclose(out, single, rtol=0, atol=1e-5 * np.abs(single).max())
    for k in (0, slices - 1):
        np.testing.assert_allclose(out[k], fbp_by_definition(sinograms[k], theta, centers[k], "shepp"),
                                   rtol=0, atol=1e-4 * np.abs(single).max())


def test_each_part_has_its_own_plan_its_cores_and_its_share_of_the_batch(monkeypatch):
    from tomobluesky.recon import _nufft

    calls = []
    real = _nufft.nufft_fbp

    def spy(sinograms, theta, centers, **kw):
        calls.append((len(sinograms), kw["ncore"], kw["batch_pairs"], kw["slot"]))
        return real(sinograms, theta, centers, **kw)

    monkeypatch.setattr(_nufft, "nufft_fbp", spy)
    theta = np.linspace(0, np.pi, 9, endpoint=False)
    sinograms = np.random.default_rng(1).random((10, 9, 8)).astype(np.float32)
    out = np.empty((10, 8, 8), dtype=np.float32)
    clear_plan_cache()
    _nufft.nufft_fbp_threads(sinograms, theta, np.full(10, 3.5), threads=4, out=out, batch_pairs=8, eps=EPS)
    # 5 pairs on 4 threads: 4 parts (1, 1, 1 and 2 pairs), one core each, 8 // 4 = 2 pairs a transform
    assert sorted(calls, key=lambda c: c[3]) == [(2, 1, 2, 0), (2, 1, 2, 1), (2, 1, 2, 2), (4, 1, 2, 3)]
    assert {key[0] for key in _nufft._PLAN_CACHE if isinstance(key, tuple)} == {0, 1, 2, 3}
    calls.clear()
    _nufft.nufft_fbp_threads(sinograms[:4], theta, np.full(4, 3.5), threads=6, out=out[:4], batch_pairs=8, eps=EPS)
    assert sorted(calls, key=lambda c: c[3]) == [(2, 3, 4, 0), (2, 3, 4, 1)]  # 2 pairs: 2 parts of 3 cores
    calls.clear()
    _nufft.nufft_fbp_threads(sinograms, theta, np.full(10, 3.5), threads=8, out=out, batch_pairs=2, eps=EPS)
    # no more parts than pairs per transform: 2 parts of 4 cores, one pair each per transform
    assert sorted(calls, key=lambda c: c[3]) == [(4, 4, 1, 0), (6, 4, 1, 1)]


def test_a_part_that_fails_fails_the_call():
    from tomobluesky.recon._nufft import nufft_fbp_threads

    theta = np.linspace(0, np.pi, 9, endpoint=False)
    sinograms = np.zeros((4, 9, 8), dtype=np.float32)
    with pytest.raises(ValueError):
        nufft_fbp_threads(sinograms, theta, np.full(4, 3.5), threads=2, out=np.empty((4, 8, 9), np.float32))


def test_plans_are_kept_across_calls_and_freed_for_another_geometry():
    from tomobluesky.recon import _nufft

    theta = np.linspace(0, np.pi, 9, endpoint=False)
    clear_plan_cache()
    first = cached_plan(np, 16, 2, EPS, 1, theta, 24, slot=1)
    assert cached_plan(np, 16, 2, EPS, 1, theta.copy(), 24, slot=1) is first
    other_slot = cached_plan(np, 16, 2, EPS, 1, theta, 24, slot=0)
    assert other_slot is not first and _nufft._PLAN_CACHE[1, 2, 1] is first  # both kept
    cached_plan(np, 16, 2, EPS, 1, theta[:-1], 24, slot=1)  # other angles: the old plans go
    assert (0, 2, 1) not in _nufft._PLAN_CACHE
    clear_plan_cache()
    assert not _nufft._PLAN_CACHE


def test_a_kept_plan_executes_for_one_caller_at_a_time():
    """Two reconstructions of one geometry in two threads would share a slot's plan, whose fine grid serves one
    transform at a time: each execute holds the plan's lock."""
    theta = np.linspace(0, np.pi, 9, endpoint=False)
    sinograms = np.random.default_rng(2).random((2, 9, 8)).astype(np.float32)
    clear_plan_cache()
    expected = nufft_fbp(sinograms, theta, [3.5, 3.5], eps=EPS)
    plan = cached_plan(np, 8, 1, EPS, None, theta, padded_length(8, True))
    held = []
    execute = plan.execute
    plan.execute = lambda data: held.append(plan.in_use.locked()) or execute(data)
    np.testing.assert_array_equal(nufft_fbp(sinograms, theta, [3.5, 3.5], eps=EPS), expected)
    assert held == [True] and not plan.in_use.locked()
