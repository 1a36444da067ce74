"""Ramp filters for filtered backprojection, in the frequency domain."""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len

FILTERS = ("ramp", "shepp", "cosine", "hann")


def padded_length(columns: int, pad: bool | float = True) -> int:
    """Row length after zero padding: 1.5× by default (against wraparound), or a factor."""
    factor = 1.5 if pad is True else (1.0 if pad is False else float(pad))
    if factor < 1:
        raise ValueError(f"pad factor must be >= 1, not {factor}")
    return next_fast_len(int(np.ceil(columns * factor)))


def ramp_response(length: int, filter_name: str = "shepp") -> np.ndarray:
    """Real frequency response (length ``length``, FFT order) of the windowed ramp.

    The ramp is built from its band-limited spatial kernel (Kak & Slaney) so
    that its zero-frequency term is right; a window then tames the high
    frequencies where noise lives.
    """
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; choose one of {FILTERS}")
    n = np.arange(length)
    n = np.where(n > length // 2, n - length, n)  # signed distance, circular
    kernel = np.zeros(length)
    kernel[n == 0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    response = np.real(np.fft.fft(kernel))  # ≈ |f| in cycles per pixel
    f = np.fft.fftfreq(length)
    window = {
        "ramp": np.ones(length),
        "shepp": np.sinc(f),
        "cosine": np.cos(np.pi * f),
        "hann": 0.5 * (1 + np.cos(2 * np.pi * f)),
    }[filter_name]
    return (response * window).astype(np.float32)
