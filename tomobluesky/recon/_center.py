"""Finding the centre of rotation: Vo's Fourier-space method and an independent
reconstruction-sharpness search, with a confidence from how they agree.

Both run coarse to fine on a reduced problem, so that a 2048-wide detector
costs about as much as a 512-wide one:

* a few detector rows (the caller passes few; more are thinned out);
* the first half-turn resampled to at most ``MAX_ANGLES`` evenly spaced
  angles (Vo's metric and a sharpness check need a few hundred, not 1500);
* columns binned so that about 512 remain, which keeps every column
  frequency that Vo's mask looks at.

Vo's metric for every whole shift at once comes from one pair of 2-D FFTs
(the shift of the mirrored half only multiplies its spectrum by a phase);
the exact metric is then minimised over fractional shifts near that guess,
again as phases, so no sinogram is ever re-interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.optimize import minimize_scalar

from ._validate import check_theta

#: angles kept from the first half-turn (more are resampled down to this)
MAX_ANGLES = 360
#: detector rows used at most (more are thinned to this many, spread evenly)
MAX_ROWS = 8
#: columns kept after binning, about (the bin is the largest whole factor leaving at least this many)
BINNED_COLUMNS = 512


@dataclass(frozen=True)
class CenterResult:
    center: float  # detector column of the axis ((columns − 1)/2 means centred)
    confidence: float  # 0..1
    method: str
    details: dict = field(default_factory=dict, repr=False)  # the search curves: long, kept out of the repr

    def __repr__(self) -> str:
        return (f"CenterResult(center={self.center:.2f}, confidence={self.confidence:.2f}, method={self.method!r}, "
                f"details={_summary(self.details)})")


def _summary(details: dict) -> str:
    """Scalars as they are, sequences as their length: the repr stays one short line."""
    parts = []
    for key, value in details.items():
        if isinstance(value, (int, float, np.floating, np.integer, str)):
            parts.append(f"{key}={value:.3g}" if not isinstance(value, str) else f"{key}={value}")
        else:
            parts.append(f"{key}=<{len(value) if hasattr(value, '__len__') else type(value).__name__}>")
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= 100 else text[:96] + "...}"


# --- the reduced problem --------------------------------------------------------------------------

def _as_stack(sinogram) -> np.ndarray:
    """(slices, angles, columns), a 2-D sinogram as one slice; no copy, so rows are thinned before converting."""
    sino = np.asarray(sinogram)
    if sino.ndim == 2:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(f"sinogram must be (angles, columns) or (slices, angles, columns), got {sino.shape}")
    return sino


def _spread_rows(sino: np.ndarray, count: int) -> np.ndarray:
    picks = np.unique(np.linspace(0, len(sino) - 1, min(count, len(sino))).round().astype(int))
    return sino[picks]


def _half_turn(sino: np.ndarray, theta: np.ndarray, max_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """The projections covering [θ0, θ0 + 180°), and their angles.

    Vo's method pairs each with its mirror half a turn later, so the angles
    must be evenly spaced over exactly 180°: when there are more than
    ``max_angles`` they are resampled (linearly in angle, fine at these
    steps) onto such a grid; fewer are used as they are.
    """
    keep = theta - theta[0] < np.pi - 1e-6
    sino, theta = sino[:, keep], theta[keep]
    count = sino.shape[1]
    if count <= max_angles:
        return sino, theta
    grid = theta[0] + np.arange(max_angles) * (np.pi / max_angles)
    order = np.argsort(theta)
    at = np.interp(grid, theta[order], np.arange(count))  # fractional position in angle order
    lo = np.minimum(at.astype(int), count - 2)
    w = (at - lo).astype(np.float32)[None, :, None]
    return sino[:, order[lo]] * (1 - w) + sino[:, order[lo + 1]] * w, grid


def _reduced(sinogram, theta, rows: int, max_angles: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A few rows, binned to about ``BINNED_COLUMNS`` columns, over one evenly
    sampled half-turn: (sinograms, angles, column bin)."""
    sino = np.asarray(_spread_rows(_as_stack(sinogram), rows), dtype=np.float32)
    if not np.isfinite(sino).all():
        raise ValueError("sinogram contains NaN or infinite values")
    b = _column_bin(sino.shape[-1])
    binned, grid = _half_turn(_bin_columns(sino, b), np.asarray(theta, dtype=np.float64), max_angles)
    return np.ascontiguousarray(binned, dtype=np.float32), grid, b


def _column_bin(columns: int, target: int = BINNED_COLUMNS) -> int:
    return max(1, columns // target)


def _bin_columns(sino: np.ndarray, b: int) -> np.ndarray:
    """Mean of ``b`` neighbouring columns; binned column u sits at full column b·u + (b − 1)/2."""
    if b == 1:
        return sino
    kept = sino.shape[-1] // b * b
    return sino[..., :kept].reshape(sino.shape[:-1] + (kept // b, b)).mean(axis=-1)


def _to_full(center_binned: float, b: int) -> float:
    return b * center_binned + (b - 1) / 2


def _to_binned(center: float, b: int) -> float:
    return (center - (b - 1) / 2) / b


# --- Vo's method, in the Fourier domain -----------------------------------------------------------

def _periodic_pad(sino: np.ndarray, length: int) -> np.ndarray:
    """Rows extended to ``length`` by a linear ramp from the last value back to the first:
    periodic without a jump, so circular shifts bring in edge values, not a step."""
    cols = sino.shape[-1]
    out = np.empty(sino.shape[:-1] + (length,), np.float32)
    out[..., :cols] = sino
    ramp = (np.arange(1, length - cols + 1) / (length - cols + 1)).astype(np.float32)
    out[..., cols:] = sino[..., -1:] * (1 - ramp) + sino[..., :1] * ramp
    return out


@dataclass(frozen=True)
class _VoSpectra:
    """The 2-D spectrum of [sinogram; mirror shifted by s] is A + (−1)^ν e^{−2πiks} B,
    with A and B the spectra of the two halves alone: every shift, whole or
    fractional, is only a phase. Only the points outside the double wedge are kept."""

    a: np.ndarray  # (points,) complex64, all rows' points concatenated
    b: np.ndarray  # (points,) complex64, the mirror's, already times (−1)^ν
    bins: np.ndarray  # (points,) column frequency index j: k = j / length cycles per pixel
    weight: np.ndarray  # (points,) 2 where an rfft frequency stands for its negative twin too, else 1
    length: int  # padded row length of the FFTs

    def metric(self, shift: float) -> float:
        """Vo's: the mean magnitude outside the wedge (a sum here; the count is fixed)."""
        phase = np.exp(-2j * np.pi * np.arange(self.length // 2 + 1) * (shift / self.length)).astype(np.complex64)
        return float(np.abs(self.a + self.b * phase[self.bins]) @ self.weight)

    def energy_curve(self, shifts: np.ndarray) -> np.ndarray:
        """The squared magnitude summed outside the wedge at whole ``shifts``.

        |A + e^{−iφ}B|² = |A|² + |B|² + 2 Re(A B̄ e^{iφ}): summed over the
        points this is a constant plus a trigonometric sum in the shift, whose
        coefficients per column frequency an inverse FFT evaluates at every
        whole shift at once.
        """
        const = float((np.abs(self.a) ** 2 + np.abs(self.b) ** 2) @ self.weight)
        product = self.a.astype(np.complex128) * np.conj(self.b) * self.weight
        size = self.length // 2 + 1
        cross = np.bincount(self.bins, product.real, size) + 1j * np.bincount(self.bins, product.imag, size)
        # irfft counts the zero and Nyquist terms once where 2 Re(·) wants them twice
        curve = np.fft.irfft(cross, n=self.length) * self.length
        shifts = np.asarray(shifts, dtype=int)
        curve = curve[shifts % self.length] + cross[0].real + cross[-1].real * np.where(shifts % 2, -1.0, 1.0)
        return const + curve


def _vo_spectra(sino: np.ndarray, ratio: float, drop: int = 0) -> _VoSpectra:
    rows, angles, cols = sino.shape
    length = 2 * sfft.next_fast_len(cols)  # room for shifts of ±cols/2 without the mirror meeting itself
    half_a = sfft.fft(sfft.rfft(_periodic_pad(sino, length), axis=-1), n=2 * angles, axis=1)
    half_b = sfft.fft(sfft.rfft(_periodic_pad(sino[..., ::-1], length), axis=-1), n=2 * angles, axis=1)
    nu = np.abs(sfft.fftfreq(2 * angles) * 2 * angles)[:, None]  # cycles per turn
    j = np.arange(length // 2 + 1)[None, :]  # column frequency j / length, cycles per pixel
    # outside the double wedge: more angular frequency than an object of this radius can make
    outside = (nu > 2 * np.pi * (ratio * cols / 2) * (j / length) + 2) & (nu > drop)
    sign = np.where(np.arange(2 * angles) % 2, -1, 1).astype(np.float32)[:, None]
    twin = np.where((j > 0) & (j < length // 2), 2, 1).astype(np.float32)
    sign, j, twin = (np.broadcast_to(g, outside.shape)[outside] for g in (sign, j, twin))
    return _VoSpectra(half_a[:, outside].ravel(), (half_b[:, outside] * sign).ravel(),
                      np.tile(j.astype(np.int32), rows), np.tile(twin, rows), length)


def _vo_search(sinogram, theta, *, search=None, ratio=0.6, max_angles=MAX_ANGLES, max_rows=MAX_ROWS,
               precision=0.02, drop=20) -> CenterResult:
    """Vo, Drakopoulos, Atwood & Reinhard (2014): a 180° sinogram joined to its
    mirror is a valid 360° sinogram only for the right axis; any other shift
    puts energy outside the double wedge in its 2-D spectrum.

    ``search``: how far from the detector's middle the axis may be, in
    columns (default a quarter of the width). ``precision``: of the answer,
    in columns. Coarse: the wedge's outside energy at every whole shift of
    the binned problem; fine: Vo's own metric (mean magnitude) minimised over
    fractional shifts around it. ``drop``: as tomopy's, the lowest angular
    frequencies (up to this many, at most 5 % of them) are left out of the
    search (the confidence is still read on the whole spectrum). A wide
    object's slow variation over the turn can pull the valley off the axis:
    measured 2.1 px off on the phantom's widest slice alone, 17.6 px
    off-centre, with ``drop=0``; 0.02 px with ``drop=20``, the default here as
    in ``find_center_vo`` and tomopy.
    """
    sino, _, b = _reduced(sinogram, theta, max_rows, max_angles)
    columns = sino.shape[-1] * b
    reach = columns / 4 if search is None else search
    return _vo(sino, b, ((columns - 1) / 2 - reach, (columns - 1) / 2 + reach), ratio, precision, drop=drop)


def find_center_vo(tomo, ind=None, smin=-50, smax=50, srad=6, step=0.25, ratio=0.5, drop=20, ncore=None) -> float:
    """tomopy's ``find_center_vo``: the axis column of a 180° scan by Vo's method (Vo et al. 2014).

    ``tomo``: (angles, rows, columns) projections, or one (angles, columns)
    sinogram, with the angles evenly spaced over half a turn. ``ind``: the row
    to use (default: the mean of the ten middle rows, as tomopy).
    ``smin``, ``smax``: the coarse search, in columns from the detector's
    middle (``columns // 2``). ``srad``: the fine search's radius around the
    coarse answer, in columns. ``step``: the precision of the answer, in
    columns (here a continuous minimisation stops within it, rather than a
    grid of that step). ``ratio``: the object's width over the field of view,
    which sets the double wedge. ``drop``: angular frequencies up to this many
    (at most 5 % of them) are left out of the metric. ``ncore``: accepted for
    tomopy's signature; the FFTs here run on one core. Returns a float, the
    column with (columns − 1)/2 meaning centred, as ``reconstruct`` takes it.

    ``find_center(sinograms, theta, method="vo")`` is the same search on
    sinograms of any angular range, with a confidence.
    """
    data = np.asarray(tomo, dtype=np.float32)
    if data.ndim == 2:
        sino = data
    elif data.ndim == 3:
        rows = data.shape[1]
        if ind is None:
            middle = rows // 2
            sino = data[:, max(middle - 5, 0):middle + 5].mean(axis=1) if rows > 10 else data[:, middle]
        elif not -rows <= ind < rows:
            raise ValueError(f"ind {ind} is not a row of the projections (0..{rows - 1})")
        else:
            sino = data[:, ind]
    else:
        raise ValueError(f"tomo must be (angles, rows, columns) or (angles, columns), got shape {data.shape}")
    if not smin < smax:
        raise ValueError(f"smin ({smin}) must be below smax ({smax})")
    theta = np.linspace(0, np.pi, sino.shape[0], endpoint=False)
    stack, _, b = _reduced(sino, theta, 1, MAX_ANGLES)
    columns = sino.shape[-1]
    bounds = (np.clip(columns // 2 + smin, 0, columns - 1), np.clip(columns // 2 + smax, 0, columns - 1))
    return _vo(stack, b, bounds, ratio, step, fine_radius=srad, drop=drop).center


def _vo(sino, b: int, bounds, ratio: float, precision: float, fine_radius=None, drop: int = 0) -> CenterResult:
    """Vo's search for the axis between ``bounds`` (full columns) on the reduced problem binned ``b``-fold;
    the fine search spans ``fine_radius`` full columns around the coarse answer (default two binned ones);
    angular frequencies up to ``drop`` (at most 5 % of them, tomopy's cap) are left out of the metric."""
    spectra = _vo_spectra(sino, ratio, min(int(drop), int(np.ceil(0.05 * 2 * sino.shape[1]))))
    mid = (sino.shape[-1] - 1) / 2
    # the centre is mid + shift/2 in binned columns
    low, high = (2 * (_to_binned(c, b) - mid) for c in bounds)
    coarse = np.arange(int(np.floor(low)), int(np.ceil(high)) + 1)
    energy = spectra.energy_curve(coarse)
    guess = coarse[int(np.argmin(energy))]
    # Vo's exact metric near the guess: a half-step grid picks the valley, Brent's method its floor
    reach = 2.0 if fine_radius is None else max(2.0 * fine_radius / b, 1.0)
    grid = guess + np.arange(-reach, reach + 1e-9, 0.5)
    values = [spectra.metric(s) for s in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    shift = minimize_scalar(spectra.metric, bounds=(lo, hi), method="bounded", options={"xatol": precision / b}).x
    center = _to_full(mid + shift / 2, b)
    # how far the best shift stands below the typical one: ~1 for an object, ~0 for noise; on the whole
    # spectrum, where the slow angular frequencies give an object its depth (the search leaves them out)
    whole = _vo_spectra(sino, ratio, 0).energy_curve(coarse) if drop else energy
    depth = float((np.median(whole) - whole.min()) / (np.median(whole) + 1e-30))
    return CenterResult(float(center), float(np.clip(depth, 0, 1)), "vo",
                        {"metric_depth": depth, "bin": b, "angles": sino.shape[1], "rows": len(sino),
                         "coarse_shifts": (coarse * b).tolist(), "coarse_metric": energy.tolist(),
                         "fine_shifts": (grid * b).tolist(), "fine_metric": values})


# --- sharpness of reconstructions -----------------------------------------------------------------

def _sharpness(image, mask):
    """Minus the fraction of the image's mass that is negative: a wrong axis
    paints negative crescents beside every edge (attenuation is never negative)."""
    values = image[mask]
    total = float(np.abs(values).sum()) or 1.0
    return -float(np.abs(values[values < 0]).sum()) / total


def _sharpness_scores(sino, theta, centers, b: int) -> np.ndarray:
    """Sharpness summed over the rows, each reconstructed at every one of
    ``centers`` (columns of ``sino``) from ``sino`` binned ``b``-fold more."""
    from ._metrics import circle_mask
    from ._nufft import nufft_fbp

    binned = _bin_columns(sino, b)
    rows, _, n = binned.shape
    stack = np.repeat(binned, len(centers), axis=0)  # row 0 at every centre, then row 1, ...
    binned_centers = np.tile([_to_binned(c, b) for c in centers], rows)
    images = nufft_fbp(stack, theta, binned_centers, filter_name="shepp")
    mask = circle_mask(n, 0.9)
    scores = np.array([_sharpness(img, mask) for img in images])
    return scores.reshape(rows, len(centers)).sum(axis=0)


def _peak(candidates, scores) -> float:
    """The best candidate, moved by a parabola through it and its neighbours."""
    best = int(np.argmax(scores))
    center = float(candidates[best])
    if 0 < best < len(candidates) - 1:
        a, b, c = scores[best - 1:best + 2]
        # argmax takes the first best, so a < b ≥ c: the parabola always opens downwards (a − 2b + c < 0)
        center += 0.5 * (a - c) / (a - 2 * b + c) * float(candidates[1] - candidates[0])
    return center


def find_center_sharpness(sinogram, theta, *, candidates=None, slices=3, max_angles=MAX_ANGLES) -> CenterResult:
    """Reconstruct a few slices at each candidate centre; the image with the
    least negative mass marks the axis. Independent of Vo's method.

    The slices are reconstructed from columns binned to about 512 (128 for
    the coarse pass). Without ``candidates``: every coarse column within an
    eighth of the width of the middle, then half-column steps around the
    best. ``candidates`` (full columns) are scored directly.
    """
    # public on its own: angles in degrees or one too few must be refused here too, not searched
    theta = check_theta(theta, _as_stack(sinogram).shape[1])
    sino, grid, b = _reduced(sinogram, theta, slices, max_angles)
    return _sharpness_search(sino, grid, b, candidates)


def _sharpness_search(sino, grid, b: int, candidates=None) -> CenterResult:
    cols = sino.shape[-1]
    mid = (cols - 1) / 2
    details = {}
    if candidates is None:
        coarse_bin = int(np.clip(cols // 128, 1, 4))  # ~128 columns: a cheap first look
        coarse = np.arange(mid - cols / 8, mid + cols / 8 + 1e-9, coarse_bin)
        coarse_scores = _sharpness_scores(sino, grid, coarse, coarse_bin)
        best = coarse[int(np.argmax(coarse_scores))]
        local = best + np.arange(-1.5 * coarse_bin, 1.5 * coarse_bin + 1e-9, 0.5)
        details = {"coarse_candidates": [_to_full(c, b) for c in coarse], "coarse_scores": coarse_scores.tolist()}
    else:
        local = np.array([_to_binned(c, b) for c in np.atleast_1d(candidates)], dtype=np.float64)
    scores = _sharpness_scores(sino, grid, local, 1)
    spread = float(np.ptp(scores)) or 1.0
    peak = float((scores.max() - np.median(scores)) / spread)
    details.update({"bin": b, "candidates": [_to_full(c, b) for c in local], "scores": scores.tolist()})
    return CenterResult(_to_full(_peak(local, scores), b), float(np.clip(peak, 0, 1)), "sharpness", details)


# --- the entry point ------------------------------------------------------------------------------

def find_center(sinogram, theta, *, method: str = "vo", **kwargs) -> CenterResult:
    """Detector column of the rotation axis from (slices, angles, columns) or (angles, columns)
    sinograms (normalised, −log), ``theta`` in radians.

    Pass a few rows spread over the detector (3 to 8 is plenty); more are
    thinned out. ``method``: ``"vo"`` (default), ``"sharpness"``, or
    ``"auto"`` (both; the answer is Vo's, and the confidence falls as the
    sharpness search, run close to it, disagrees).
    """
    if method not in ("vo", "sharpness", "auto"):
        raise ValueError(f"unknown centre method {method!r}; choose 'vo', 'sharpness' or 'auto'")
    theta = check_theta(theta, _as_stack(sinogram).shape[1])
    if method == "vo":
        return _vo_search(sinogram, theta, **kwargs)
    if method == "sharpness":
        return find_center_sharpness(sinogram, theta, **kwargs)
    return _find_center_auto(sinogram, theta, **kwargs)


def _find_center_auto(sinogram, theta, *, max_rows=MAX_ROWS, slices=3, max_angles=MAX_ANGLES) -> CenterResult:
    sino, grid, b = _reduced(sinogram, theta, max_rows, max_angles)
    columns = sino.shape[-1] * b
    vo = _vo(sino, b, ((columns - 1) / 2 - columns / 4, (columns - 1) / 2 + columns / 4), 0.6, 0.02, drop=20)
    # sharpness one binned column apart around Vo's answer, on a few of the rows; its parabola
    # resolves a fraction of a binned column
    near = vo.center + b * np.arange(-2.0, 2.0 + 1e-9)
    sharp = _sharpness_search(_spread_rows(sino, slices), grid, b, near)
    gap = abs(vo.center - sharp.center)
    tolerance = 2.0 * max(1.0, b / 2)  # what the sharpness search can tell apart at its bin
    # agreement alone is not enough: on pure noise the sharpness search can land near Vo by chance,
    # so Vo's own confidence (near 0 on noise) scales it
    confidence = float(np.clip(1 - gap / tolerance, 0, 1) * vo.confidence)
    return CenterResult(vo.center, confidence, "auto",
                        {"vo": vo.center, "sharpness": sharp.center, "gap": gap, "vo_confidence": vo.confidence,
                         "sharpness_confidence": sharp.confidence, "bin": b, "rows": len(sino)})
