"""Flat field and −log (``_preprocess``): the edge cases the mutants of issue 16 showed untested.

A dim beam is still a beam; float32 results whatever the detector's integer or float type; lists are
accepted as the docstrings say; every error and warning word for word, naming the array at fault.
"""

import logging
import re

import numpy as np
import pytest

from tomobluesky import recon


def _frames(shape=(3, 2, 5)):
    rng = np.random.default_rng(0)
    darks = 100 + rng.random((2,) + shape[1:]).astype(np.float32)
    flats = 1000 + rng.random((3,) + shape[1:]).astype(np.float32)
    projections = (darks.mean(0) + rng.uniform(0.2, 0.9, shape) * (flats.mean(0) - darks.mean(0))).astype(np.float32)
    return projections, flats, darks


def test_a_dim_beam_is_a_beam():
    """Half a count of beam above the dark is little, but it is light: its transmission is measured."""
    darks = np.full((1, 1, 3), 10.0, np.float32)
    flats = np.array([[[10.5, 12.0, 10.0]]], np.float32)
    projections = np.array([[[10.25, 11.0, 10.0]]], np.float32)
    out = recon.normalize(projections, flats, darks)
    np.testing.assert_allclose(out[0, 0, :2], [0.5, 0.5])
    assert out[0, 0, 2] == 0  # no beam at all: transmission 0
    field = recon.flat_field(flats, darks, warn=False)
    np.testing.assert_array_equal(field.no_beam, [[False, False, True]])


def test_flat_field_gives_float32_frames_from_uint16():
    darks = np.full((2, 2, 3), 100, np.uint16)
    flats = np.full((2, 2, 3), 20100, np.uint16)
    for averaging in ("mean", "median"):
        dark, beam = recon.flat_field(flats, darks, averaging=averaging)
        assert dark.dtype == beam.dtype == np.float32
        assert (dark == 100).all() and (beam == 20000).all()


def test_apply_flat_field_takes_raw_uint16_projections():
    """The stop path hands the detector's own frames over: (p − dark) / beam in float32, no wrap-around."""
    projections = np.array([[[0, 100, 10100, 20100]]], np.uint16)
    dark = np.full((1, 4), 100, np.float32)
    beam = np.full((1, 4), 20000, np.float32)
    out = recon.apply_flat_field(projections, dark, beam)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[-0.005, 0.0, 0.5, 1.0]]])


def test_minus_log_is_float32_whatever_the_float_type_given():
    got = recon.minus_log(np.array([1.0, np.exp(-2.0)], np.float64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [0.0, 2.0], rtol=1e-6)


def test_lists_are_accepted_and_checked():
    projections, flats, darks = _frames()
    want = recon.normalize(projections, flats, darks)
    np.testing.assert_allclose(recon.normalize(projections.tolist(), flats.tolist(), darks.tolist()), want, rtol=1e-6)
    bad = flats.tolist()
    bad[0][0][0] = float("nan")
    with pytest.raises(ValueError, match="^flats contains NaN or infinite values$"):
        recon.normalize(projections.tolist(), bad, darks.tolist())


@pytest.mark.parametrize("which", ["projections", "flats", "darks"])
def test_the_array_with_a_nan_is_named(which):
    arrays = dict(zip(("projections", "flats", "darks"), _frames()))
    arrays[which][0, 1, 2] = np.inf
    with pytest.raises(ValueError, match=f"^{which} contains NaN or infinite values$"):
        recon.normalize(arrays["projections"], arrays["flats"], arrays["darks"])


@pytest.mark.parametrize("which", ["flats", "darks"])
def test_the_frames_of_the_wrong_shape_are_named(which):
    arrays = dict(zip(("projections", "flats", "darks"), _frames()))
    arrays[which] = arrays[which][:, :, :4]
    with pytest.raises(ValueError, match=re.escape(f"{which} of shape {arrays[which].shape} do not match "
                                                   "projections of shape (3, 2, 5)")):
        recon.normalize(arrays["projections"], arrays["flats"], arrays["darks"])


def test_no_frames_message():
    projections, flats, _ = _frames()
    with pytest.raises(ValueError, match="^normalisation needs at least one flat and one dark frame$"):
        recon.normalize(projections, flats, [])


def test_one_pixel_without_beam_is_reported_in_the_singular_word_for_word(caplog):
    _, flats, darks = _frames()
    flats[:, 1, 3] = 0.0
    with caplog.at_level(logging.WARNING, logger="tomobluesky.recon"):
        field = recon.flat_field(flats, darks)
    message = ("flats are not brighter than darks in 1 pixel, in columns 3: their transmission is taken as 0 "
               "(check the flats)")
    assert [r.getMessage() for r in caplog.records] == [message]
    assert recon.no_beam_message(1, [3]) == message
    assert recon.no_beam_message(2, [3, 4], " in rows 0..1") == message.replace("1 pixel,", "2 pixels in rows 0..1,") \
        .replace("columns 3:", "columns 3-4:")
    assert int(field.no_beam.sum()) == 1


def test_columns_without_beam_over_a_stack_of_masks():
    """The last axis is the columns whatever the leading axes (slabs × rows)."""
    mask = np.zeros((2, 3, 7), bool)
    mask[0, 2, 1] = mask[1, 0, 5] = mask[1, 1, 5] = True
    np.testing.assert_array_equal(recon.no_beam_columns(mask), [1, 5])


def test_twenty_ranges_are_all_listed_the_twenty_first_is_counted():
    twenty = list(range(0, 40, 2))
    assert recon.compact_ranges(twenty) == ", ".join(str(n) for n in twenty)
    assert recon.compact_ranges(twenty + [50]).endswith("36, 38, and 1 more ranges")
