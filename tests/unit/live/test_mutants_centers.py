"""CenterMemory and setup_key (live/_centers.py): the last axis per beamline set-up, on disk (issue 16 mutants)."""

import json
import math

import pytest

from tomobluesky.live._centers import CenterMemory, setup_key

_DOC = {"beamline_id": "bl1", "camera": "cam", "rotation": "rot", "detector_shape": [4, 6], "pixel_size": 0.65}


@pytest.mark.parametrize("field, other", [("beamline_id", "bl2"), ("camera", "cam2"), ("rotation", "rot2"),
                                          ("detector_shape", [4, 7]), ("pixel_size", 1.3)])
def test_each_part_of_the_set_up_changes_the_key(field, other):
    assert setup_key(dict(_DOC, **{field: other})) != setup_key(_DOC)
    # the key names the values themselves, in this order: what the file holds is readable
    assert json.loads(setup_key(_DOC)) == ["bl1", "cam", "rot", [4, 6], 0.65]


def test_a_start_document_without_the_fields_has_a_key_and_a_tuple_shape_keys_like_a_list():
    assert json.loads(setup_key({})) == [None, None, None, [], None]
    assert setup_key(dict(_DOC, detector_shape=(4, 6))) == setup_key(_DOC)
    assert setup_key({"unrelated": 1, **_DOC}) == setup_key(_DOC)


def test_remember_then_recall_per_key_in_a_new_folder(tmp_path):
    path = tmp_path / "a" / "b" / "centers.json"
    memory = CenterMemory(str(path))
    assert memory.recall("k1") is None  # no file yet
    memory.remember("k1", 101, scan="uid-1")
    memory.remember("k2", 55.25)
    memory.remember("k1", 102.5)  # the newest replaces, the others stay
    again = CenterMemory(path)
    assert again.recall("k1") == 102.5 and isinstance(again.recall("k1"), float)
    assert again.recall("k2") == 55.25
    assert again.recall("k3") is None
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"k1", "k2"} and data["k1"]["center"] == 102.5
    assert "scan" not in data["k1"] and data["k2"]["center"] == 55.25
    assert sorted(p.name for p in path.parent.iterdir()) == ["centers.json"]  # no temporary file left


def test_extra_information_and_the_time_are_kept_with_the_centre(tmp_path):
    import time

    memory = CenterMemory(tmp_path / "c.json")
    before = time.time()
    memory.remember("k", 7, scan="uid-9", method="vo")
    entry = json.loads((tmp_path / "c.json").read_text())["k"]
    assert entry["scan"] == "uid-9" and entry["method"] == "vo"
    assert before <= entry["time"] <= time.time()
    assert isinstance(entry["center"], float)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_centre_that_is_not_finite_is_refused_and_the_file_is_left_alone(tmp_path, bad):
    memory = CenterMemory(tmp_path / "c.json")
    memory.remember("k", 3.0)
    with pytest.raises(ValueError, match="not a finite number"):
        memory.remember("k", bad)
    assert memory.recall("k") == 3.0


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "does not hold a JSON object"),
    ('{"k": 5}', "entry k has no finite centre"),
    ('{"k": {"center": "12"}}', "entry k has no finite centre"),
    ('{"k": {"center": Infinity}}', "entry k has no finite centre"),
    ('{"k": {}}', "entry k has no finite centre"),
])
def test_a_damaged_file_is_reported_not_read_as_no_centre(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        CenterMemory(path).recall("k")


def test_an_integer_centre_in_the_file_is_read_as_a_float(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"k": {"center": 12}, "other": 3}', encoding="utf-8")
    got = CenterMemory(path).recall("k")
    assert got == 12.0 and isinstance(got, float)


def test_non_ascii_keys_round_trip(tmp_path):
    memory = CenterMemory(tmp_path / "c.json")
    key = setup_key(dict(_DOC, camera="Kamera-ö"))
    memory.remember(key, 9.5)
    assert CenterMemory(tmp_path / "c.json").recall(key) == 9.5


def test_the_new_file_is_written_beside_the_old_one_not_in_the_system_temp_folder(tmp_path, monkeypatch):
    """os.replace is atomic only within one filesystem: the temporary file must be made in the target's
    folder. With the system temp folder unusable, remembering still works."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-folder"))
    memory = CenterMemory(tmp_path / "keep" / "c.json")
    memory.remember("k", 4.5)
    assert memory.recall("k") == 4.5


def test_a_file_written_by_hand_in_utf8_is_read(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes('{"Kamera-ö": {"center": 8.25}}'.encode("utf-8"))
    assert CenterMemory(path).recall("Kamera-ö") == 8.25
