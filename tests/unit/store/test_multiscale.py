"""The multiscale Zarr writer: pyramid values, slab rules, OME-NGFF metadata."""

import itertools

import numpy as np
import pytest
import zarr

from tomobluesky.store import MultiscaleWriter, downsample2, level_shapes, open_multiscale, read_level


def block_mean(a):
    """Reference 2× block means, written the slow, obvious way: NaN-pad to even
    sizes so a cut-short edge block averages only the elements it has."""
    padded = np.full([n + n % 2 for n in a.shape], np.nan)
    padded[tuple(slice(0, n) for n in a.shape)] = a
    z, y, x = (n // 2 for n in padded.shape)
    return np.nanmean(padded.reshape(z, 2, y, 2, x, 2), axis=(1, 3, 5))


@pytest.fixture
def volume():
    return np.random.default_rng(3).random((37, 21, 19), dtype=np.float32)


def test_level_shapes_halve_rounding_up_until_the_largest_axis_fits():
    assert level_shapes((256, 1024, 1024), 256) == [(256, 1024, 1024), (128, 512, 512), (64, 256, 256)]
    assert level_shapes((5, 9, 3), 2) == [(5, 9, 3), (3, 5, 2), (2, 3, 1), (1, 2, 1)]
    assert level_shapes((4, 100, 100), 256) == [(4, 100, 100)]


def test_block_mean_of_odd_sizes_averages_what_the_edge_block_has():
    a = np.arange(3 * 3 * 1, dtype=np.float32).reshape(3, 3, 1)
    out = downsample2(a)
    assert out.shape == (2, 2, 1) and out.dtype == np.float32
    assert out[0, 0, 0] == np.mean([0, 1, 3, 4]) and out[1, 1, 0] == 8 and out[1, 0, 0] == np.mean([6, 7])


def test_every_level_is_the_block_mean_of_the_one_above(tmp_path, volume):
    writer = MultiscaleWriter(tmp_path / "v.zarr", volume.shape, min_size=5, chunks=(4, 8, 8))
    assert writer.levels == [(37, 21, 19), (19, 11, 10), (10, 6, 5), (5, 3, 3)]
    for z0 in range(0, 37, 8):
        writer.write_slab(z0, volume[z0:z0 + 8])
    expected = volume.astype(np.float64)
    for k, level in enumerate(open_multiscale(tmp_path / "v.zarr")):
        np.testing.assert_allclose(level[...], expected, rtol=2e-6)
        expected = block_mean(expected)


def test_slabs_in_any_order_give_the_same_store_as_one_write(tmp_path, volume):
    whole = MultiscaleWriter(tmp_path / "whole.zarr", volume.shape, min_size=5, chunks=(8, 8, 8))
    whole.write_slab(0, volume)
    parts = MultiscaleWriter(tmp_path / "parts.zarr", volume.shape, min_size=5, chunks=(8, 8, 8))
    starts = list(range(0, 37, parts.slab_alignment))
    for z0 in reversed(starts[::2] + starts[1::2]):
        parts.write_slab(z0, volume[z0:z0 + parts.slab_alignment])
    for k in range(len(whole.levels)):
        np.testing.assert_array_equal(read_level(tmp_path / "parts.zarr", k), read_level(tmp_path / "whole.zarr", k))


def test_aligned_slabs_never_share_a_chunk_file(tmp_path, volume, monkeypatch):
    """Parallel writers must never touch the same chunk: record the chunk files
    each slab writes (zarr's local store writes through one function), at
    every level, and check that the slabs' sets are disjoint."""
    import zarr.storage._local as local

    written = []
    put = local._put
    monkeypatch.setattr(local, "_put", lambda path, *a, **k: (written.append(path), put(path, *a, **k))[1])
    writer = MultiscaleWriter(tmp_path / "v.zarr", volume.shape, min_size=5, chunks=(8, 8, 8))
    h = writer.slab_height(10)
    assert h == 8 and writer.slab_alignment == 8
    owner = {}
    for z0 in range(0, volume.shape[0], h):
        written.clear()
        writer.write_slab(z0, volume[z0:z0 + h])
        chunks = {p for p in written if "/c/" in p.as_posix()}
        assert chunks, "the store no longer writes through zarr.storage._local._put"
        for p in chunks:
            assert p not in owner, f"slab {z0} rewrote {p} of slab {owner[p]}"
            owner[p] = z0
    levels = {p.relative_to(tmp_path / "v.zarr").parts[0] for p in owner}
    assert levels == {"0", "1", "2", "3"}


def test_misaligned_or_misshapen_slabs_are_refused(tmp_path, volume):
    writer = MultiscaleWriter(tmp_path / "v.zarr", volume.shape, min_size=5)
    assert writer.slab_multiple == 8
    with pytest.raises(ValueError, match="start on a multiple of 8"):
        writer.write_slab(4, volume[4:12])
    with pytest.raises(ValueError, match="multiple of 8 slices high"):
        writer.write_slab(0, volume[:6])
    with pytest.raises(ValueError, match="whole slices"):
        writer.write_slab(0, volume[:8, :10])
    with pytest.raises(ValueError, match="outside"):
        writer.write_slab(32, np.zeros((8, 21, 19), np.float32))
    writer.write_slab(32, volume[32:])  # the last slab may be any height
    np.testing.assert_array_equal(read_level(tmp_path / "v.zarr")[32:], volume[32:])


def test_slab_height_rounds_to_valid_heights(tmp_path):
    writer = MultiscaleWriter(tmp_path / "v.zarr", (100, 600, 600), chunks=(16, 128, 128))
    assert writer.slab_multiple == 4 and writer.slab_alignment == 16
    assert [writer.slab_height(d) for d in (1, 16, 40, 1000)] == [16, 16, 32, 112]
    assert writer.slab_height(6, parallel=False) == 4
    with pytest.raises(ValueError, match="power-of-two"):
        MultiscaleWriter(tmp_path / "w.zarr", (10, 10, 10), chunks=(12, 8, 8))


def test_reopened_writer_in_another_process_continues_the_store(tmp_path, volume):
    MultiscaleWriter(tmp_path / "v.zarr", volume.shape, min_size=5, chunks=(8, 8, 8))
    again = MultiscaleWriter.open(tmp_path / "v.zarr")
    assert again.slab_alignment == 8 and again.levels[0] == volume.shape
    again.write_slab(8, volume[8:16])
    np.testing.assert_array_equal(read_level(tmp_path / "v.zarr", 0)[8:16], volume[8:16])


def test_metadata_is_valid_ome_ngff_0_5(tmp_path):
    models = pytest.importorskip("ome_zarr_models.v05.image")
    MultiscaleWriter(tmp_path / "v.zarr", (20, 40, 30), min_size=8, pixel_size=0.65, attributes={"scan_uid": "u"})
    group = zarr.open_group(tmp_path / "v.zarr", mode="r")
    image = models.Image.from_zarr(group)
    ms = image.attributes.ome.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in ms.axes] == [(n, "space", "micrometer") for n in "zyx"]
    assert [d.path for d in ms.datasets] == ["0", "1", "2", "3"]
    assert ms.datasets[2].coordinateTransformations[0].scale == pytest.approx([2.6] * 3)
    assert ms.datasets[2].coordinateTransformations[1].translation == pytest.approx([0.975] * 3)
    assert group.attrs["scan_uid"] == "u" and group.attrs["ome"]["version"] == "0.5"


def test_integer_volumes_round_their_means(tmp_path):
    a = np.array(list(itertools.islice(itertools.cycle([1, 2]), 8)), np.uint16).reshape(2, 2, 2)
    assert downsample2(a).dtype == np.uint16 and downsample2(a)[0, 0, 0] == 2  # 1.5 rounds to even


def _chunk_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("c/*/*/*"))


@pytest.mark.parametrize("reopened", [False, True])
def test_float_volumes_write_chunks_of_zeros_and_label_volumes_skip_them(tmp_path, reopened):
    """zarr's check of every chunk against the fill value halved the write rate and never skips a chunk of a
    reconstruction; integer (label) volumes keep it, their background stays off the disk. A writer reopened
    (as a Dask worker does) keeps the same choice: zarr holds it with the open array, not in the store."""
    shape, chunks = (8, 32, 32), (4, 16, 16)
    for dtype, expected in (("float32", 2 * 2 * 2), ("uint16", 0)):
        path = tmp_path / f"{dtype}.zarr"
        writer = MultiscaleWriter(path, shape, dtype=dtype, chunks=chunks, min_size=32)
        if reopened:
            writer = MultiscaleWriter.open(path)
        writer.write_slab(0, np.zeros(shape, dtype=dtype))
        assert len(_chunk_files(path / "0")) == expected, dtype
        np.testing.assert_array_equal(read_level(path), np.zeros(shape, dtype=dtype))
    labels = MultiscaleWriter(tmp_path / "labels.zarr", shape, dtype="uint16", chunks=chunks, min_size=32)
    slab = np.zeros(shape, dtype="uint16")
    slab[5, 20, 3] = 7  # one label in the chunk (1, 1, 0): only that chunk is written
    labels.write_slab(0, slab)
    assert _chunk_files(tmp_path / "labels.zarr" / "0") == ["c/1/1/0"]
