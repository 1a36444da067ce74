"""The catalogue writer's guard (tomobluesky/catalog/_confine.py), in process: which documents reach the
writer, rewritten how, and what a refusal says. Written against mutmut's survivors."""

from __future__ import annotations

import numpy as np
import pytest

from tomobluesky.catalog._confine import ConfinedDocuments, UnstorableValue
from tomobluesky.pipeline import RefusedPath


@pytest.fixture
def guard(tmp_path):
    root = tmp_path / "data"
    (root / "scan").mkdir(parents=True)
    seen = []
    g = ConfinedDocuments(lambda name, doc: seen.append((name, doc)) or "written", roots=[root])
    g.seen, g.root = seen, root
    return g


def _refuse(guard, uid="res-1", name="stream_resource"):
    doc = {"uid": uid, "uri": "file:///etc/passwd"} if name == "stream_resource" else \
        {"uid": uid, "root": "/etc", "resource_path": "passwd"}
    with pytest.raises(RefusedPath):
        guard(name, doc)


def test_datums_of_a_refused_resource_are_refused_by_name(guard):
    _refuse(guard, "res-1")
    _refuse(guard, "res-2", "resource")
    with pytest.raises(RefusedPath) as err:
        guard("stream_datum", {"uid": "sd-1", "stream_resource": "res-1"})
    assert str(err.value) == "stream_datum sd-1 refers to refused resource res-1"
    with pytest.raises(RefusedPath) as err:
        guard("datum", {"datum_id": "d-1", "resource": "res-2"})  # old datums have no uid
    assert str(err.value) == "datum d-1 refers to refused resource res-2"
    with pytest.raises(RefusedPath) as err:
        guard("datum_page", {"datum_id": ["d-1", "d-2"], "resource": ["res-2", "res-2"]})
    assert str(err.value) == "datum_page ['d-1', 'd-2'] refers to refused resource res-2"
    long = "u" * 100
    with pytest.raises(RefusedPath) as err:
        guard("stream_datum", {"uid": long, "stream_resource": "res-1"})
    assert str(err.value) == f"stream_datum {'u' * 80} refers to refused resource res-1"
    _refuse(guard, "r" * 100)
    with pytest.raises(RefusedPath) as err:
        guard("stream_datum", {"uid": "sd-2", "stream_resource": "r" * 100})
    assert str(err.value) == f"stream_datum sd-2 refers to refused resource {'r' * 80}"
    assert guard.seen == []


def test_a_file_announced_before_it_exists_is_passed(guard):
    """A detector's StreamResource comes before its first frame is written."""
    future = guard.root / "scan" / "not_yet.h5"
    guard("stream_resource", {"uid": "s", "uri": future.as_uri()})
    assert guard.seen == [("stream_resource", {"uid": "s", "uri": future.as_uri()})]


def test_descriptors_without_data_keys_or_uid(guard):
    assert guard("descriptor", {"uid": "d", "data_keys": None}) == "written"
    assert guard("descriptor", {"uid": None, "data_keys": {"t": {"shape": []}}}) == "written"
    assert guard("event", {"uid": "e", "descriptor": "d", "data": {"t": [1]}}) == "written"


def test_datums_of_other_resources_pass(guard):
    _refuse(guard, "res-1")
    assert guard("datum_page", {"datum_id": [], "resource": []}) == "written"  # an empty page
    assert guard("datum_page", {"datum_id": ["d"], "resource": ["res-ok"]}) == "written"
    assert guard("stream_datum", {"uid": "sd", "stream_resource": "res-ok"}) == "written"
    assert [n for n, _ in guard.seen] == ["datum_page", "datum_page", "stream_datum"]


def test_resources_are_passed_on_with_their_real_path(guard):
    (guard.root / "scan" / "f.h5").write_bytes(b"")
    link = guard.root / "link"
    link.symlink_to(guard.root / "scan")
    guard("resource", {"uid": "r", "root": str(link), "resource_path": "f.h5", "spec": "AD_HDF5"})
    guard("stream_resource", {"uid": "s", "uri": f"file://localhost{link}/../link/f.h5", "mimetype": "x"})
    (_, old), (_, new) = guard.seen
    real = guard.root / "scan" / "f.h5"
    assert old == {"uid": "r", "root": "/", "resource_path": str(real).lstrip("/"), "spec": "AD_HDF5"}
    assert new == {"uid": "s", "uri": real.as_uri(), "mimetype": "x"}


def _descriptor(guard):
    guard("descriptor", {"uid": "desc", "data_keys": {
        "t": {"dtype": "number", "shape": []},
        "img": {"dtype": "array", "shape": [2, 2], "external": "STREAM:"},  # external: not in a table
        "trace": {"dtype": "array", "shape": [3]},
        "odd": "not a data key",
        "ref": {"dtype": "number", "shape": [], "external": "FILESTORE:"}}})  # a datum id, checked elsewhere


@pytest.mark.parametrize("value", [1.5, np.float64(2), np.array(3.0), None, "text"])
def test_scalars_where_scalars_are_declared(guard, value):
    _descriptor(guard)
    assert guard("event", {"uid": "ev", "descriptor": "desc", "data": {"t": value, "trace": [1, 2, 3]}}) == "written"


@pytest.mark.parametrize("value,kind", [([1, 2], "list"), ((1, 2), "tuple"), (np.arange(3), "ndarray"),
                                        ({"a": 1}, "dict")])
def test_arrays_or_maps_in_a_scalar_column_are_refused(guard, value, kind):
    _descriptor(guard)
    with pytest.raises(UnstorableValue) as err:
        guard("event", {"uid": "ev-1", "descriptor": "desc", "data": {"t": value}})
    assert str(err.value) == (f"event ev-1: 't' holds a {kind} where the descriptor declares a scalar; "
                              "the catalogue cannot store it")


def test_a_map_in_an_array_column_is_refused_and_pages_are_checked_per_row(guard):
    _descriptor(guard)
    with pytest.raises(UnstorableValue) as err:
        guard("event_page", {"uid": "p" * 90, "descriptor": "desc", "data": {"trace": [[1, 2, 3], {"x": 1}]}})
    assert str(err.value) == (f"event_page {'p' * 80}: 'trace' holds a dict where the descriptor declares an "
                              "array; the catalogue cannot store it")
    assert guard("event_page", {"uid": "p", "descriptor": "desc", "data": {"t": [1, 2], "img": ["a", "b"]}}) \
        == "written"  # a page of scalars; an external key is not checked
    assert guard("event", {"uid": "e", "descriptor": "desc", "data": {"ref": {"datum": 1}}}) == "written"


def test_events_the_guard_knows_nothing_about_pass(guard):
    _descriptor(guard)
    for doc in ({"uid": "e", "descriptor": "unknown", "data": {"t": [1]}},
                {"uid": "e", "descriptor": ["desc"], "data": {"t": [1]}},  # not even a uid
                {"uid": "e", "descriptor": "desc", "data": "not a map"}):
        assert guard("event", doc) == "written"
