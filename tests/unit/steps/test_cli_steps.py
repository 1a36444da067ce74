"""`tomobluesky steps`: what is installed, and a pipeline file checked."""

import json

from tomobluesky.cli import main


def test_steps_lists_the_builtin_steps_with_pattern_and_parameters(capsys):
    assert main(["steps", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["segment"]["pattern"] == "volume" and "sigma=1.0" in found["segment"]["parameters"]
    assert found["paganin"]["halo"] == 32 and "delta_beta" in found["paganin"]["parameters"]
    assert "flats" not in found["normalize"]["parameters"]  # context, not a parameter a pipeline sets
    assert main(["steps"]) == 0
    text = capsys.readouterr().out
    assert "reconstruct    sinograms" in text and "segment        volume" in text


def test_steps_check_prints_the_pipeline_or_one_error_line(tmp_path, capsys):
    good = tmp_path / "good.yml"
    good.write_text("- step: normalize\n- step: reconstruct\n- step: segment\n  params: {sigma: 2}\n")
    assert main(["steps", "--check", str(good), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in record] == ["normalize", "reconstruct", "segment"]
    assert record[2]["params"] == {"sigma": 2.0}
    bad = tmp_path / "bad.yml"
    bad.write_text("- step: reconstruct\n- step: segmnt\n")
    assert main(["steps", "--check", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tomobluesky steps: error: pipeline entry 2: unknown step 'segmnt'") and "\n" not in err
