"""normalize() and minus_log(): values, tomopy's mean by default and the median as an option, ``out=``, errors."""

import numpy as np
import pytest

from tomobluesky import recon


def _frames(rng, shape=(5, 4, 6), average=np.mean):
    darks = 100 + rng.random((3,) + shape[1:]).astype(np.float32)
    flats = 1000 + rng.random((4,) + shape[1:]).astype(np.float32)
    transmission = rng.uniform(0.1, 1.0, shape).astype(np.float32)
    dark, flat = average(darks, axis=0), average(flats, axis=0)
    projections = (dark + transmission * (flat - dark)).astype(np.float32)
    return projections, flats, darks, transmission


def test_normalize_recovers_transmission():
    projections, flats, darks, transmission = _frames(np.random.default_rng(0))
    out = recon.normalize(projections, flats, darks)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == projections.shape
    np.testing.assert_allclose(out, transmission, rtol=1e-4)


def test_median_ignores_a_zinger_in_one_flat_the_default_mean_does_not():
    projections, flats, darks, transmission = _frames(np.random.default_rng(1), average=np.median)
    flats[0, 2, 3] = 60000.0
    np.testing.assert_allclose(recon.normalize(projections, flats, darks, averaging="median"), transmission,
                               rtol=2e-3)
    # tomopy's default: the mean flat there is (3 × ~1000 + 60000)/4, so the transmission drops ~16-fold
    mean = recon.normalize(projections, flats, darks)
    assert mean[:, 2, 3] == pytest.approx(transmission[:, 2, 3] * (1000 - 100) / (np.mean(flats[:, 2, 3]) - 100),
                                          rel=2e-3)
    np.testing.assert_allclose(np.delete(mean.reshape(5, -1), 2 * 6 + 3, axis=1),
                               np.delete(transmission.reshape(5, -1), 2 * 6 + 3, axis=1), rtol=2e-3)


def test_single_2d_flat_and_dark_frames_are_accepted():
    projections, flats, darks, transmission = _frames(np.random.default_rng(9))
    np.testing.assert_array_equal(recon.normalize(projections, flats.mean(axis=0), darks.mean(axis=0)),
                                  recon.normalize(projections, flats, darks))


def test_unknown_averaging():
    projections, flats, darks, _ = _frames(np.random.default_rng(10))
    with pytest.raises(ValueError, match="averaging must be one of"):
        recon.normalize(projections, flats, darks, averaging="mode")


def test_out_is_filled_in_place():
    projections, flats, darks, transmission = _frames(np.random.default_rng(2))
    out = np.empty_like(projections)
    assert recon.normalize(projections, flats, darks, out=out) is out
    assert recon.minus_log(out, out=out) is out
    np.testing.assert_allclose(out, -np.log(transmission), rtol=1e-3, atol=1e-5)


def test_minus_log_clips_before_the_log():
    values = recon.minus_log(np.array([1.0, 0.5, 0.0, -3.0], np.float32))
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values[:2], [0.0, np.log(2)], rtol=1e-6)
    assert values[2] == values[3] == pytest.approx(-np.log(recon.MIN_TRANSMISSION))


def test_dead_flat_pixel_gives_zero_transmission_not_inf():
    projections, flats, darks, _ = _frames(np.random.default_rng(3))
    flats[:, 1, 1] = np.median(darks[:, 1, 1])
    out = recon.normalize(projections, flats, darks)
    assert np.isfinite(out).all() and (out[:, 1, 1] == 0).all()


@pytest.mark.parametrize("which", ["flats", "darks"])
@pytest.mark.parametrize("missing", [None, "empty"])
def test_missing_flats_or_darks(which, missing):
    projections, flats, darks, _ = _frames(np.random.default_rng(4))
    frames = {"flats": flats, "darks": darks}
    frames[which] = None if missing is None else frames[which][:0]
    with pytest.raises(ValueError, match="at least one flat and one dark"):
        recon.normalize(projections, frames["flats"], frames["darks"])


def test_zero_flats():
    projections, flats, darks, _ = _frames(np.random.default_rng(5))
    with pytest.raises(ValueError, match="no beam"):
        recon.normalize(projections, np.zeros_like(flats), darks)


def test_shape_mismatch():
    projections, flats, darks, _ = _frames(np.random.default_rng(6))
    with pytest.raises(ValueError, match="do not match"):
        recon.normalize(projections, flats[:, :, :-1], darks)
    with pytest.raises(ValueError, match="angles, rows, columns"):
        recon.normalize(projections[0], flats, darks)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_non_finite(bad, which):
    arrays = list(_frames(np.random.default_rng(7))[:3])
    arrays[which][0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        recon.normalize(*arrays)


def test_uint16_frames_normalise_to_float32():
    # counts a uint16 detector could write: dark ~100, flat ~20100, no rounding in the truth
    rng = np.random.default_rng(8)
    darks = rng.integers(95, 106, (3, 4, 6)).astype(np.uint16)
    flats = rng.integers(20000, 20200, (4, 4, 6)).astype(np.uint16)
    dark = np.mean(darks.astype(np.float64), axis=0)
    beam = np.mean(flats.astype(np.float64), axis=0) - dark
    projections = rng.integers(200, 20000, (5, 4, 6)).astype(np.uint16)
    out = recon.normalize(projections, flats, darks)
    assert out.dtype == np.float32 and out.shape == (5, 4, 6)
    np.testing.assert_allclose(out, (projections - dark) / beam, rtol=1e-6)
    # a projection darker than the dark gives a negative transmission, not a uint16 wrap-around
    projections[0, 0, 0] = 0
    assert recon.normalize(projections, flats, darks)[0, 0, 0] == pytest.approx(-dark[0, 0] / beam[0, 0], rel=1e-6)


def test_flats_without_beam_are_reported_with_their_columns(caplog):
    projections, flats, darks, transmission = _frames(np.random.default_rng(3), shape=(5, 4, 320))
    flats[:, :, 12:16] = 0.0  # a dead strip: four columns in every row
    flats[:, 2, 300] = np.median(darks[:, 2, 300])  # one pixel no brighter than its dark
    with caplog.at_level("WARNING", logger="tomobluesky.recon"):
        field = recon.flat_field(flats, darks, where=" in detector rows 0..4")
    dark, beam = field  # still unpacks as (dark, beam)
    assert field.no_beam.shape == (4, 320) and int(field.no_beam.sum()) == 17
    np.testing.assert_array_equal(recon.no_beam_columns(field.no_beam), [12, 13, 14, 15, 300])
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "17 pixels in detector rows 0..4, in columns 12-15, 300" in record.getMessage()
    assert np.isinf(beam[:, 12:16]).all() and np.isinf(beam[2, 300])  # transmission 0 there, as before


def test_flats_with_beam_everywhere_give_the_same_numbers_and_no_warning(caplog):
    projections, flats, darks, transmission = _frames(np.random.default_rng(4))
    with caplog.at_level("WARNING", logger="tomobluesky.recon"):
        field = recon.flat_field(flats, darks)
    assert field.no_beam is None and not caplog.records
    dark, beam = field
    np.testing.assert_array_equal(dark, np.median(darks, axis=0))
    np.testing.assert_array_equal(beam, np.median(flats, axis=0) - np.median(darks, axis=0))


def test_flat_field_can_leave_the_report_to_its_caller(caplog):
    projections, flats, darks, transmission = _frames(np.random.default_rng(5))
    flats[:, :, 0] = 0.0
    with caplog.at_level("WARNING", logger="tomobluesky.recon"):
        field = recon.flat_field(flats, darks, warn=False)
    assert not caplog.records and recon.no_beam_columns(field.no_beam).tolist() == [0]


@pytest.mark.parametrize("numbers, text", [
    ([], ""), ([7], "7"), ([12, 13, 14, 15, 300], "12-15, 300"), ([3, 1, 2, 2, 9, 10], "1-3, 9-10"),
    (list(range(0, 100, 2)), ", ".join(str(n) for n in range(0, 40, 2)) + ", and 30 more ranges"),
])
def test_compact_ranges(numbers, text):
    assert recon.compact_ranges(numbers) == text
