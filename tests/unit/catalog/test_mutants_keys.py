"""Key handling (tomobluesky/keys.py) without a server: what a key must look like, where a client finds
it, how a key file is written, and the refused ``--api-key``. Written against mutmut's survivors: before
these, keys.py was reached only by the system tests."""

from __future__ import annotations

import argparse
import os
import stat

import pytest

from tomobluesky import keys
from tomobluesky.keys import KEY_ENV, KeyRefused, check_key, client_key, new_key, read_key_file, write_secret

GOOD = "0123456789abcdefABCDEF0123456789"  # 32 hex digits: the shortest key accepted


def test_new_keys_are_64_random_hex_digits():
    made = {new_key() for _ in range(20)}
    assert len(made) == 20
    for key in made:
        assert len(key) == 64 and int(key, 16) >= 0 and check_key(key) == key


@pytest.mark.parametrize("key", [GOOD, GOOD + "ab", "f" * 64, f"  {GOOD}\n"])
def test_accepted_keys_come_back_stripped(key):
    assert check_key(key) == key.strip()


@pytest.mark.parametrize("key", ["", GOOD[:30], GOOD[:31], GOOD + "a", GOOD[:-1] + "g", GOOD[:16] + " " + GOOD[16:],
                                 "z" * 40])
def test_short_odd_or_non_hex_keys_are_refused(key):
    with pytest.raises(KeyRefused) as err:
        check_key(key)
    assert str(err.value) == ("refusing the key given: a Tiled API key must be an even number of at least 32 "
                              "hexadecimal digits (make one with `openssl rand -hex 32`)")


def test_the_refusal_names_where_the_key_came_from():
    with pytest.raises(KeyRefused, match=r"^refusing \$SOMEWHERE: "):
        check_key("abc", "$SOMEWHERE")


def test_key_files(tmp_path, monkeypatch):
    good = tmp_path / "writer.key"
    good.write_text(GOOD + "\n")
    assert read_key_file(good) == GOOD and read_key_file(str(good)) == GOOD
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_key_file("~/writer.key") == GOOD  # ~ is the user's home

    weak = tmp_path / "weak.key"
    weak.write_text("1234")
    with pytest.raises(KeyRefused, match=rf"^refusing the key in {weak}: a Tiled API key must be"):
        read_key_file(weak)
    missing = tmp_path / "none.key"
    with pytest.raises(KeyRefused) as err:
        read_key_file(missing)
    assert str(err.value) == f"cannot read the Tiled API key file {missing}: No such file or directory"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no traceback chain to the OSError


def test_written_secrets_are_private_and_replace_the_old_one(tmp_path):
    path = tmp_path / "reader.key"
    path.write_text("old")
    os.chmod(path, 0o644)
    stale = tmp_path / ".reader.key.tmp"  # left behind by an earlier crash, readable by all
    stale.write_text("junk " * 40)  # longer than the key: must not show after it
    os.chmod(stale, 0o644)
    write_secret(path, GOOD)
    assert path.read_text() == GOOD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reader.key"]
    fresh = tmp_path / "new" / "writer.key"
    fresh.parent.mkdir()
    write_secret(fresh, GOOD)  # nothing there before: created
    assert fresh.read_text() == GOOD and stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_where_a_client_finds_its_key(tmp_path, monkeypatch):
    given, stored = tmp_path / "given.key", tmp_path / "stored.key"
    given.write_text("a" * 32)
    stored.write_text("b" * 32)
    monkeypatch.setenv(KEY_ENV, "c" * 32)
    assert client_key(given, stored) == "a" * 32  # --api-key-file first
    assert client_key(str(given)) == "a" * 32
    assert client_key(None, stored) == "c" * 32  # then the environment
    monkeypatch.setenv(KEY_ENV, "abc")
    with pytest.raises(KeyRefused, match=rf"^refusing \${KEY_ENV}: "):
        client_key(None, stored)
    monkeypatch.setenv(KEY_ENV, "")  # empty counts as unset
    assert client_key(None, stored) == "b" * 32  # then the stored key
    monkeypatch.delenv(KEY_ENV)
    assert client_key(None, stored) == "b" * 32
    assert client_key(None, tmp_path / "absent.key") is None  # else anonymous
    assert client_key() is None
    assert client_key("", None) is None


def _parser(**kwargs):
    parser = argparse.ArgumentParser(prog="tomobluesky-test")
    keys.add_key_file_option(parser, "the reader's key file", **kwargs)
    return parser


def test_the_key_file_option(tmp_path):
    parser = _parser()
    assert parser.parse_args(["--api-key-file", "/k/reader.key"]).api_key_file == "/k/reader.key"
    assert parser.parse_args([]).api_key_file is None
    text = parser.format_help()
    assert "--api-key-file PATH" in text and "the reader's key file" in text
    assert "--api-key " not in text and "--api-key\n" not in text  # the refusing option is hidden


def test_a_key_on_the_command_line_is_refused_without_echoing_it(capsys):
    secret = "5ec2e7" * 8
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--api-key", secret])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert secret not in err
    assert ("error: --api-key is not accepted: a key on the command line is visible to every local user; "
            f"set {KEY_ENV} or give --api-key-file PATH") in err


def test_the_refusal_carries_its_own_hint(capsys):
    parser = argparse.ArgumentParser(prog="server")
    keys.refuse_key_argument(parser, hint="keys live in DATA_DIR/keys")
    with pytest.raises(SystemExit):
        parser.parse_args(["--api-key=00ff"])
    err = capsys.readouterr().err
    assert "--api-key is not accepted" in err and err.rstrip().endswith("user; keys live in DATA_DIR/keys")
    assert "00ff" not in err
