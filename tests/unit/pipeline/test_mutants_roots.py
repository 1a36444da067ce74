"""Path confinement (tomobluesky/pipeline/_roots.py): the refusals and their messages, URIs, unconfined use, and
the HDF5 links looked at before a dataset is opened. Written against mutmut's survivors (docs/testing.md)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomobluesky.pipeline._roots import (DataRoots, FrameReadError, RefusedPath, check_dataset, open_dataset,
                                         regular_file, uri_path)


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "detector"
    (folder / "sub").mkdir(parents=True)
    with h5py.File(folder / "x.h5", "w") as f:
        f["data"] = np.arange(6.0)
    return folder.resolve()


def refusal(roots, path, **kw) -> str:
    with pytest.raises(RefusedPath) as err:
        roots.resolve(path, **kw)
    return str(err.value)


# --- DataRoots --------------------------------------------------------------------------------------

def test_roots_are_real_paths_and_none_means_unconfined(root, tmp_path):
    os.symlink(root, tmp_path / "alias")
    assert DataRoots([tmp_path / "alias"]).roots == (root,)
    assert DataRoots(None).roots is None
    assert repr(DataRoots(None)) == "DataRoots(None)"
    assert repr(DataRoots([root, "/tmp"])) == f"DataRoots([{str(root)!r}, {os.path.realpath('/tmp')!r}])"
    with pytest.raises(ValueError) as err:
        DataRoots([])
    assert str(err.value) == "no data roots given: name at least one directory"
    same = DataRoots([root])
    assert DataRoots.of(same) is same and DataRoots.of(None).roots is None and DataRoots.of([root]).roots == (root,)


def test_every_refusal_names_the_path_and_the_roots(root, tmp_path):
    roots = DataRoots([root, tmp_path / "other"])
    where = f"under the data roots {root}, {os.path.realpath(tmp_path / 'other')}"
    for path in ("relative/x.h5", "/etc/passwd", str(root / "missing.h5"), str(root / "sub")):
        assert refusal(roots, path) == f"refusing {path!r}: not a readable regular file {where}"
    long = str(root / ("y" * 400))
    assert refusal(roots, long) == f"refusing {long[:300]!r}: not a readable regular file {where}"


def test_a_nul_byte_is_a_refusal_not_a_crash(root):
    assert "not a readable regular file" in refusal(DataRoots([root]), f"{root}/x.h5\x00.txt")
    assert "not a readable regular file anywhere" in refusal(DataRoots(None), f"{root}/x.h5\x00")


def test_a_relative_path_is_refused_even_from_inside_the_root(root, monkeypatch):
    monkeypatch.chdir(root)
    assert refusal(DataRoots([root]), "x.h5").startswith("refusing 'x.h5'")
    assert refusal(DataRoots(None), "x.h5") == "refusing 'x.h5': not a readable regular file anywhere"


def test_a_file_not_there_yet_only_when_asked(root):
    roots = DataRoots([root])
    assert roots.resolve(root / "x.h5") == root / "x.h5"
    assert roots.resolve(root / "later.h5", must_exist=False) == root / "later.h5"
    refusal(roots, root / "later.h5")
    assert "not a readable regular file" in refusal(roots, root / "sub", must_exist=False)  # exists, not a file
    resource = {"uri": f"file://{root}/later.h5"}
    with pytest.raises(RefusedPath):
        roots.resource_file(resource)
    with pytest.raises(RefusedPath):
        roots.resource_file(resource, must_exist=True)
    assert roots.resource_file(resource, must_exist=False) == root / "later.h5"


def test_unconfined_use_says_exactly_what_is_wrong(root):
    roots = DataRoots(None)
    assert roots.resolve(root / "x.h5") == root / "x.h5"
    assert roots.resolve(root / "later.h5", must_exist=False) == root / "later.h5"
    with pytest.raises(FrameReadError) as err:
        roots.resolve(root / "later.h5")
    assert str(err.value) == f"HDF5 file {root / 'later.h5'} does not exist"
    with pytest.raises(FrameReadError) as err:
        roots.resolve(root / "sub", must_exist=False)  # it exists: it must be a regular file
    assert str(err.value) == f"{root / 'sub'} is not a regular file"


def test_regular_file_errors(root):
    with pytest.raises(FrameReadError) as err:
        regular_file(root / "x.h5" / "inside")
    assert str(err.value) == f"cannot read {root / 'x.h5' / 'inside'}: Not a directory"
    assert regular_file(root / "x.h5") == root / "x.h5"


# --- URIs -------------------------------------------------------------------------------------------

def test_old_style_resources_without_root_or_path():
    assert uri_path({"resource_path": "x.h5"}) == "x.h5"
    assert uri_path({"root": "/data"}) == "/data/"
    assert uri_path({"root": "/data", "resource_path": "a/x.h5"}) == "/data/a/x.h5"


@pytest.mark.parametrize("uri", ["http://host{}", "file://otherhost{}", "file://{}?q=1", "file://{}#frag",
                                 "ftp://localhost{}"], ids=["http", "otherhost", "query", "fragment", "ftp"])
def test_uris_other_than_local_files_are_refused_even_for_a_file_under_the_roots(root, uri):
    uri = uri.format(root / "x.h5")  # the path is absolute: file:///...
    assert DataRoots([root]).resource_file({"uri": f"file://{root}/x.h5"}) == root / "x.h5"
    with pytest.raises(RefusedPath) as err:
        DataRoots([root]).resource_file({"uri": uri})
    assert str(err.value) == f"refusing URI {uri!r}: only file: URIs on this host are read"


def test_local_file_uris_are_read(root):
    for uri in (f"file://{root}/x.h5", f"file://localhost{root}/x.h5", f"{root}/x.h5"):
        assert DataRoots([root]).resource_file({"uri": uri}) == root / "x.h5"
    assert uri_path({"uri": "file:///data/a%20b.h5"}) == "/data/a b.h5"  # encoded, no '..': decoded


def test_an_encoded_dotdot_is_refused_even_when_it_stays_under_the_roots(root):
    uri = f"file://{root}/sub/%2e%2e/x.h5"
    with pytest.raises(RefusedPath) as err:
        DataRoots([root]).resource_file({"uri": uri})
    assert str(err.value) == f"refusing URI {uri!r}: encoded '..' in the path"
    long = f"file://{root}/{'d' * 400}/%2E%2E/x.h5"
    with pytest.raises(RefusedPath) as err:
        uri_path({"uri": long})
    assert str(err.value) == f"refusing URI {long[:300]!r}: encoded '..' in the path"
    long = "http://" + "h" * 400
    with pytest.raises(RefusedPath) as err:
        uri_path({"uri": long})
    assert str(err.value) == f"refusing URI {long[:300]!r}: only file: URIs on this host are read"


# --- HDF5 links -------------------------------------------------------------------------------------

def write(path, build):
    with h5py.File(path, "w") as f:
        f["real"] = np.arange(4.0)
        build(f)
    return path


def opened(path, name):
    with h5py.File(path, "r") as f:
        return open_dataset(f, name, path)[()]


GONE = "/nonexistent/elsewhere.h5"  # an external target that does not exist: only the link check can refuse


@pytest.mark.parametrize("group", ["g", "g ", "gX"], ids=["plain", "space", "X"])  # ends a wrong strip would cut
def test_external_links_inside_groups_and_behind_relative_soft_links_are_refused(root, group):
    def build(f):
        g = f.create_group(group)
        g["ext"] = h5py.ExternalLink(GONE, "data")
        g["rel"] = h5py.SoftLink("ext")  # relative to the group
        f["to_group"] = h5py.SoftLink(f"/{group}")
        g["inner"] = np.arange(3.0)
        g["rel_inner"] = h5py.SoftLink("inner")
    path = write(root / "links.h5", build)
    for name in (f"{group}/ext", f"{group}/rel", "to_group/ext", f"/{group}/./ext", f"{group}//rel"):
        with pytest.raises(RefusedPath) as err:
            opened(path, name)
        assert "an HDF5 external link to another file is not read" in str(err.value), name
    np.testing.assert_array_equal(opened(path, f"{group}/rel_inner"), np.arange(3.0))
    np.testing.assert_array_equal(opened(path, "to_group/inner"), np.arange(3.0))
    with pytest.raises(RefusedPath) as err:
        opened(path, b"to_group/ext")
    assert str(err.value) == f"{path}:/{group}/ext: an HDF5 external link to another file is not read"
    np.testing.assert_array_equal(opened(path, b"real"), np.arange(4.0))


def test_a_long_external_link_name_is_cut_in_the_message(root):
    name = "n" * 300
    path = write(root / "long.h5", lambda f: f.__setitem__(name, h5py.ExternalLink(GONE, "data")))
    with pytest.raises(RefusedPath) as err:
        opened(path, name)
    assert str(err.value) == f"{path}:{('/' + name)[:200]}: an HDF5 external link to another file is not read"


def chain(count):
    def build(f):
        for i in range(count):
            f[f"l{i}"] = h5py.SoftLink(f"/l{i + 1}")
        f[f"l{count}"] = h5py.SoftLink("/real")
    return build


def test_soft_links_are_followed_32_deep_and_no_further(root):
    deep = write(root / "deep.h5", chain(32))  # l0 .. l31 -> l32 -> real: 33 soft links
    with pytest.raises(RefusedPath) as err:
        opened(deep, "l0")
    assert str(err.value) == f"{deep}:/real: too many soft links"
    fine = write(root / "fine.h5", chain(31))  # 32 soft links: not refused (HDF5 itself may still refuse)
    with pytest.raises(Exception) as err:
        opened(fine, "l0")
    assert not isinstance(err.value, RefusedPath)
    with pytest.raises(RefusedPath, match="too many soft links"):
        opened(write(root / "loop.h5", lambda f: (f.__setitem__("a", h5py.SoftLink("/b")),
                                                  f.__setitem__("b", h5py.SoftLink("/a")))), "a")
    long = "s" * 300
    path = write(root / "cycle.h5", lambda f: f.__setitem__(long, h5py.SoftLink("/" + long)))
    with pytest.raises(RefusedPath) as err:
        opened(path, long)
    assert str(err.value) == f"{path}:{('/' + long)[:200]}: too many soft links"


def test_a_name_that_cannot_be_a_link_is_left_to_hdf5(root):
    path = write(root / "plain.h5", lambda f: None)
    with pytest.raises(KeyError):
        opened(path, "real/below")  # through a dataset
    with pytest.raises(KeyError):
        opened(path, "missing/real")
    with pytest.raises(KeyError):
        opened(path, b"g/\xff")  # not UTF-8: looked at with surrogates, then HDF5 says it is not there
    with pytest.raises(KeyError):
        opened(path, b"\xff/x")  # a first step HDF5 cannot even look up is not taken for an external link


def test_check_dataset_messages(root, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(4.0)
    (tmp_path / "raw.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())

    def build(f):
        f["ext"] = h5py.ExternalLink(str(other), "data")
        f.create_dataset("stored", shape=(4,), dtype=np.float32, external=[(str(tmp_path / "raw.bin"), 0, 16)])
        layout = h5py.VirtualLayout(shape=(4,), dtype=np.float64)
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(4,))
        f.create_virtual_dataset("virtual", layout)
    path = write(root / "hostile.h5", build)
    with h5py.File(path, "r") as f:
        expected = {"ext": f"{path}:/data: an HDF5 external link to another file is not read",
                    "stored": f"{path}:/stored: datasets stored in external raw files are not read",
                    "virtual": f"{path}:/virtual: virtual datasets (mapped from other files) are not read"}
        for name, message in expected.items():
            with pytest.raises(RefusedPath) as err:
                check_dataset(f[name], Path(path))
            assert str(err.value) == message
        check_dataset(f["real"], Path(path))
