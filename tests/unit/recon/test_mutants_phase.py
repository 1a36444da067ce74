"""Paganin phase retrieval against its transfer function, tomopy's padding rule and its error messages
(the mutants of recon/_phase.py that test_rings_phase_stitch.py let through, issue 16).

A periodic image 1 + a·cos(2π(fy·y + fx·x)) with the frequencies on the FFT grid is an eigenfunction of
the filter when nothing is padded: the result is 1 + a·H(f)·cos(…) with Paganin's H(f) =
1 / (1 + π·λ·z·(δ/β)·|f|²), written here in SI units straight from the paper, not through tomopy's alpha.
"""

import numpy as np
import pytest

from tomobluesky import recon

H_EV_S = 4.135667696e-15  # Planck's constant in eV·s
C_M_S = 299_792_458.0


def _mode(rows, cols, ky, kx, amplitude):
    """1 + a·cos(2π(ky·y/rows + kx·x/cols)): whole periods across the image, so periodic."""
    y = np.arange(rows)[:, None] / rows
    x = np.arange(cols)[None, :] / cols
    return 1.0 + amplitude * np.cos(2 * np.pi * (ky * y + kx * x))


def _paganin_gain(rows, cols, ky, kx, pixel_m, distance_m, energy_kev, delta_beta):
    wavelength_m = H_EV_S * C_M_S / (energy_kev * 1e3)
    f2 = (ky / (rows * pixel_m)) ** 2 + (kx / (cols * pixel_m)) ** 2  # cycles per metre, squared
    return 1.0 / (1.0 + np.pi * wavelength_m * distance_m * delta_beta * f2)


def _amplitude(image, ky, kx):
    """The cosine's amplitude, projected out of the image (exact for whole periods)."""
    rows, cols = image.shape
    basis = _mode(rows, cols, ky, kx, 1.0) - 1.0
    return float((image.astype(np.float64) - image.mean()).ravel() @ basis.ravel() / (basis.ravel() @ basis.ravel()))


@pytest.mark.parametrize("energy_kev", [12.0, 30.0])
def test_paganin_damps_a_periodic_mode_by_its_transfer_function(energy_kev):
    """Rows and columns odd (the inverse FFT must be told the shape), float64 in and float32 out, a stack of
    three images each with its own mode (each image filtered, the stack kept), and an energy other than
    tomopy's default 20 keV (the energy must reach the filter)."""
    rows, cols, a = 45, 63, 0.2
    pixel, distance, delta_beta = 1e-6, 0.002, 800.0
    modes = [(0, 3), (2, 0), (3, 5)]
    stack = np.stack([_mode(rows, cols, ky, kx, a) for ky, kx in modes])
    out = recon.paganin(stack, pixel_size_m=pixel, distance_m=distance, energy_kev=energy_kev,
                        delta_beta=delta_beta, pad=False)
    assert out.shape == stack.shape and out.dtype == np.float32
    for image, (ky, kx) in zip(out, modes):
        gain = _paganin_gain(rows, cols, ky, kx, pixel, distance, energy_kev, delta_beta)
        assert 0.05 < gain < 0.95  # a mode the filter visibly damps, not one it leaves or wipes out
        np.testing.assert_allclose(image, _mode(rows, cols, ky, kx, a * gain), atol=2e-6)
    # at tomopy's default 20 keV the damping is visibly another: the energy must reach the filter
    assert abs(_paganin_gain(rows, cols, *modes[2], pixel, distance, 20.0, delta_beta)
               - _paganin_gain(rows, cols, *modes[2], pixel, distance, energy_kev, delta_beta)) > 0.02


def test_retrieve_phase_defaults_are_tomopys():
    """tomopy.retrieve_phase(tomo, pixel_size=1e-4, dist=50, energy=20, alpha=1e-3): its filter with those
    numbers is 1 / (1 + λ·dist·w² / (4π·alpha)), w in cycles per cm."""
    rows, cols, ky, kx, a = 40, 100, 0, 2, 0.3
    image = _mode(rows, cols, ky, kx, a).astype(np.float32)
    wavelength_cm = H_EV_S * C_M_S * 100 / 20e3
    w2 = (kx / (cols * 1e-4)) ** 2
    gain = 1.0 / (1.0 + wavelength_cm * 50 * w2 / (4 * np.pi * 1e-3))
    assert 0.2 < gain < 0.8
    out = recon.retrieve_phase(image, pad=False)
    assert out.shape == image.shape and out.dtype == np.float32  # one 2-D image in, one out
    assert _amplitude(out, ky, kx) == pytest.approx(a * gain, rel=1e-4)
    np.testing.assert_allclose(out, _mode(rows, cols, ky, kx, a * gain), atol=2e-6)


def test_an_integer_image_is_filtered_as_floats():
    """Raw detector counts (uint16) in: the result is float32 and not truncated to integers."""
    rows, cols, ky, kx = 32, 48, 1, 2
    counts = np.round(1000 * _mode(rows, cols, ky, kx, 0.25)).astype(np.uint16)
    out = recon.paganin(counts, pixel_size_m=1e-6, distance_m=0.05, energy_kev=20, delta_beta=800, pad=False)
    assert out.dtype == np.float32
    expected = recon.paganin(counts.astype(np.float32), pixel_size_m=1e-6, distance_m=0.05, energy_kev=20,
                             delta_beta=800, pad=False)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert np.abs(out - np.round(out)).max() > 0.1  # the filtered values are not whole counts


def _tomopy_padded(size, pixel_cm, wavelength_cm, dist_cm):
    """tomopy's rule: the filter reaches π·λ·dist/pixel² pixels; the image plus that reach is padded up to
    the next power of two, split evenly (the odd pixel of an odd difference is not padded)."""
    reach = int(np.ceil(np.pi * wavelength_cm * dist_cm / pixel_cm ** 2))
    total = 1 << int(np.ceil(np.log2(size + reach)))
    return (total - size) // 2


@pytest.mark.parametrize("shape", [(37, 21), (50, 77)])
def test_padding_is_tomopys_edge_padding_to_a_power_of_two(shape):
    """pad=True is the image extended by its edge values to tomopy's size, filtered without padding, and
    cropped back. The distance is long enough that the filter reaches past the image (about 100 pixels),
    so the padded size is a power of two well above the image's; an image that is not periodic shows
    which padding was used."""
    rows, cols = shape
    pixel_cm, dist_cm, energy = 1e-4, 50.0, 20.0
    wavelength_cm = H_EV_S * C_M_S * 100 / (energy * 1e3)
    pr, pc = (_tomopy_padded(n, pixel_cm, wavelength_cm, dist_cm) for n in shape)
    assert min(pr, pc) > max(rows, cols) // 2  # the reach, not the image, sets the padded size
    image = np.random.default_rng(5).uniform(0.6, 1.0, shape).astype(np.float32)
    image[:, : cols // 3] *= 0.8  # a step: edge padding and wraparound both matter
    padded = np.pad(image, ((pr, pr), (pc, pc)), mode="edge")
    expected = recon.retrieve_phase(padded, pixel_size=pixel_cm, dist=dist_cm, energy=energy, alpha=1e-3,
                                    pad=False)[pr:pr + rows, pc:pc + cols]
    out = recon.retrieve_phase(image, pixel_size=pixel_cm, dist=dist_cm, energy=energy, alpha=1e-3)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    # the padding matters here: without it the result is another image
    bare = recon.retrieve_phase(image, pixel_size=pixel_cm, dist=dist_cm, energy=energy, alpha=1e-3, pad=False)
    assert np.abs(bare - out).max() > 1e-3


def test_a_material_with_delta_beta_below_one_is_accepted():
    """δ/β < 1 (a strong absorber at low energy) is a valid material; only δ/β ≤ 0 is refused."""
    assert recon.alpha_from_delta_beta(0.5) == pytest.approx(1 / (2 * np.pi ** 2))
    rows, cols, ky, kx = 16, 32, 0, 2
    out = recon.paganin(_mode(rows, cols, ky, kx, 0.2), pixel_size_m=0.5e-6, distance_m=0.2, energy_kev=10,
                        delta_beta=0.5, pad=False)
    gain = _paganin_gain(rows, cols, ky, kx, 0.5e-6, 0.2, 10, 0.5)
    assert 0.2 < gain < 0.8
    np.testing.assert_allclose(out, _mode(rows, cols, ky, kx, 0.2 * gain), atol=2e-6)
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError, match="^delta_beta must be positive"):
            recon.alpha_from_delta_beta(bad)


GOOD_SI = dict(pixel_size_m=1e-6, distance_m=0.1, energy_kev=20.0, delta_beta=100.0)
GOOD_CM = dict(pixel_size=1e-4, dist=10.0, energy=20.0, alpha=1e-3)


@pytest.mark.parametrize("name", ["pixel_size_m", "distance_m", "energy_kev"])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf")])
def test_paganin_names_the_bad_parameter(name, bad):
    flat = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=f"^{name} must be positive, got {bad}$"):
        recon.paganin(flat, **{**GOOD_SI, name: bad})


@pytest.mark.parametrize("name", ["pixel_size", "dist", "energy", "alpha"])
@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan")])
def test_retrieve_phase_names_the_bad_parameter(name, bad):
    flat = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=f"^{name} must be positive, got {bad}$"):
        recon.retrieve_phase(flat, **{**GOOD_CM, name: bad})
