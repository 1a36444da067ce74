"""remove_zingers: planted outliers go, every other pixel stays as it was; its parameters are checked
by tomobluesky's pipeline before a scan would start."""

import numpy as np
import pytest

from tomobluesky.steps import Pipeline, PipelineError


def _sinograms(rows=4, angles=180, columns=64, noise=0.01, seed=0):
    """Smooth sinogram tracks (a few off-axis points seen over 180°) plus Gaussian noise, per row."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, np.pi, angles, endpoint=False)[:, None]
    x = np.arange(columns)[None, :]
    clean = np.zeros((rows, angles, columns), np.float32)
    for r in range(rows):
        for radius, phase, width in [(12, 0.3, 5.0), (20, 2.0, 4.0), (5, 4.0, 6.0)]:
            track = columns / 2 + radius * np.cos(theta + phase + r)
            clean[r] += np.exp(-((x - track) / width) ** 2)
    return clean, (clean + rng.normal(0, noise, clean.shape)).astype(np.float32)


def _plant(data, count=25, seed=1):
    """Zingers of both signs (a bright raw pixel is a dip after −log), none in the first or last frame
    and never on one pixel in two consecutive frames (see the tests below for both)."""
    rows, angles, columns = data.shape
    rng = np.random.default_rng(seed)
    picked = set()
    while len(picked) < count:
        r, a, c = int(rng.integers(rows)), int(rng.integers(1, angles - 1)), int(rng.integers(columns))
        if not {(r, a - 1, c), (r, a + 1, c)} & picked:
            picked.add((r, a, c))
    where = tuple(np.array(sorted(picked)).T)
    hit = data.copy()
    hit[where] += np.where(rng.random(count) < 0.5, -1.0, 1.0) * rng.uniform(0.3, 2.0, count)
    return hit, where


@pytest.fixture(scope="module")
def zingers():
    """The installed step, as tomobluesky's pipeline runs it on a slab of sinograms."""
    pipeline = Pipeline.from_spec([{"step": "remove_zingers"}, {"step": "reconstruct"}])
    return lambda sinograms: pipeline.run("sinograms", sinograms)


def test_planted_zingers_are_replaced_and_every_other_pixel_is_unchanged(zingers):
    clean, noisy = _sinograms()  # 1° a frame, as the tooth scan: the tracks move < 0.4 px a frame
    hit, where = _plant(noisy)
    out = zingers(hit)
    assert out.shape == hit.shape and out.dtype == np.float32
    changed = out != hit
    planted = np.zeros(hit.shape, bool)
    planted[where] = True
    np.testing.assert_array_equal(changed, planted)  # each zinger, and nothing else
    # a zinger becomes one of its frame neighbours: off the clean value by at most the clean sinogram's
    # change from frame to frame, plus noise (σ 0.01)
    rows, angles, columns = where
    change = np.maximum(np.abs(clean[rows, angles - 1, columns] - clean[where]),
                        np.abs(clean[rows, angles + 1, columns] - clean[where]))
    assert np.all(np.abs(out[where] - clean[where]) <= change + 0.04)


def test_the_noise_is_measured_per_row(zingers):
    """A noisy row (less beam) keeps its noise; a zinger of the same height in a quiet row is removed."""
    _, quiet = _sinograms(rows=2, noise=0.005, seed=2)
    _, loud = _sinograms(rows=2, noise=0.1, seed=3)
    data = np.concatenate([quiet, loud])
    data[0, 40, 30] += 0.3  # 60 σ in the quiet row, 3 σ in the loud one
    data[2, 40, 30] += 0.3
    out = zingers(data)
    assert out[0, 40, 30] != data[0, 40, 30] and (out[0] != data[0]).sum() == 1
    np.testing.assert_array_equal(out[1:], data[1:])


def test_the_end_frames_are_kept_and_a_two_frame_zinger_needs_size_5():
    """The first and last frame have neighbours on one side only: size 3 leaves them. A pixel hit in two
    consecutive frames is the median of its three frames: size 5 (two frames each side) removes it."""
    pipelines = {size: Pipeline.from_spec([{"step": "remove_zingers", "params": {"size": size}},
                                           {"step": "reconstruct"}]) for size in (3, 5)}
    _, data = _sinograms(rows=1)
    data[0, [0, -1], 10] += 1.0
    data[0, [40, 41], 20] += 1.0
    three, five = (pipelines[size].run("sinograms", data) for size in (3, 5))
    np.testing.assert_array_equal(three, data)
    assert (five != data).sum() == 2 and five[0, 40, 20] != data[0, 40, 20] and five[0, 41, 20] != data[0, 41, 20]


@pytest.mark.parametrize("params, message", [
    ({"threshold": 0}, "parameter 'threshold'=0: Input should be greater than 0"),
    ({"size": 4}, "parameter 'size'=4: Input should be 3, 5 or 7"),
    ({"treshold": 5}, "has no parameter 'treshold'; it takes threshold, size"),
])
def test_bad_parameters_are_refused_before_anything_runs(params, message):
    with pytest.raises(PipelineError, match=message):
        Pipeline.from_spec([{"step": "remove_zingers", "params": params}, {"step": "reconstruct"}])


def test_parameters_from_yaml_text_are_converted():
    pipeline = Pipeline.from_spec([{"step": "remove_zingers", "params": {"threshold": "4.5", "size": 5}},
                                   {"step": "reconstruct"}])
    assert pipeline.stage("sinograms")[0].params == {"threshold": 4.5, "size": 5}
