"""The ramp filters (``_filters``) against their definitions.

The band-limited ramp's spatial kernel (Kak & Slaney, eq. 3.61, unit sampling): h(0) = 1/4, h(n) = 0 for
even n ≠ 0 and −1/(πn)² for odd n. On a row of L samples it is laid circularly, distances
−⌊(L−1)/2⌋ … ⌊L/2⌋, and its frequency response is the real part of its DFT, a cosine sum written out
here term by term. Its zero-frequency term is small and positive (what keeps the gain of FBP right) and
everywhere else it follows |f|. The windows multiply it: sinc(f) (Shepp-Logan), cos(πf), and the Hann
window ½(1 + cos 2πf), all 1 at f = 0.
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._filters import padded_length, ramp_response

WINDOWS = {
    "ramp": lambda f: np.ones_like(f),
    "shepp": lambda f: np.sinc(f),
    "cosine": lambda f: np.cos(np.pi * f),
    "hann": lambda f: 0.5 * (1 + np.cos(2 * np.pi * f)),
}


def ramp_by_definition(length):
    k = np.arange(length)
    response = np.zeros(length)
    for n in range(-((length - 1) // 2), length // 2 + 1):
        h = 0.25 if n == 0 else (-1.0 / (np.pi * n) ** 2 if n % 2 else 0.0)
        response += h * np.cos(2 * np.pi * k * n / length)
    return response


@pytest.mark.parametrize("length", [15, 16, 24, 27, 64])
@pytest.mark.parametrize("filter_name", recon.FILTERS)
def test_response_is_the_windowed_band_limited_ramp(filter_name, length):
    got = ramp_response(length, filter_name)
    assert got.shape == (length,) and got.dtype == np.float32
    f = np.fft.fftfreq(length)
    want = ramp_by_definition(length) * WINDOWS[filter_name](f)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("length", [16, 27, 150])
def test_ramp_follows_the_absolute_frequency_with_a_small_positive_zero_term(length):
    """Even in f (a real filter), ≈ |f| (the truncated kernel's error falls as 1/L), H(0) > 0."""
    h = ramp_response(length, "ramp").astype(np.float64)
    f = np.fft.fftfreq(length)
    np.testing.assert_allclose(h[1:], h[1:][::-1], atol=1e-7)
    assert 0 < h[0] < 1 / length
    np.testing.assert_allclose(h, np.abs(f), atol=1.5 / length)


def test_default_window_is_shepp_logan():
    np.testing.assert_array_equal(ramp_response(32), ramp_response(32, "shepp"))


def test_unknown_window_is_named():
    with pytest.raises(ValueError, match=r"unknown filter 'gauss'; choose one of \('ramp', 'shepp'"):
        ramp_response(16, "gauss")


@pytest.mark.parametrize("columns", [7, 64, 100, 511, 640, 2048])
@pytest.mark.parametrize("pad, factor", [(True, 1.5), (False, 1.0), (1.0, 1.0), (2.0, 2.0), (1.3, 1.3)])
def test_padded_length_is_at_least_the_factor_and_fft_friendly(columns, pad, factor):
    """At least ``factor`` × columns (1.5 by default) against wraparound, rounded up only to a length that
    the FFT does fast (few small prime factors): never more than 10 % longer."""
    length = padded_length(columns, pad)
    assert isinstance(length, int)
    assert columns * factor <= length <= max(columns * factor * 1.1, columns * factor + 2)
    rest = length
    for p in (2, 3, 5, 7, 11):
        while rest % p == 0:
            rest //= p
    assert rest == 1, length


@pytest.mark.parametrize("pad", [0.5, 0.999])
def test_padding_below_one_is_refused(pad):
    with pytest.raises(ValueError, match=f"pad factor must be >= 1, not {pad}"):
        padded_length(64, pad)
