"""Two scoped keys against real ``tiled serve`` processes (issue 12, "Trust"): the read-only key
reads and nothing else, the write key writes, anonymous requests only read and only when the
server is public, keys persist across restarts, weak keys are refused, the data directory is
private to its owner, and no key ever appears on a process's command line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from tiled.client import from_uri
from tiled.client.utils import ClientError

from tomobluesky.catalog import TiledServer
from tomobluesky.demo import _start_workers
from tomobluesky.keys import KEY_ENV, KeyRefused, new_key

pytestmark = pytest.mark.system

GIVEN_WRITER_KEY = "5e" * 32  # adopted at the first start, as `serve --writer-key-file` does


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A fresh catalogue (its directory made by TiledServer) started with a writer key of our own
    and holding one array. The last test of this module restarts it."""
    data_dir = tmp_path_factory.mktemp("keys") / "catalog"
    server = TiledServer(data_dir, writer_key=GIVEN_WRITER_KEY).start()
    server.client().write_array(np.arange(12).reshape(3, 4), key="a", metadata={"kind": "test"})
    yield server
    server.stop()


def _refused(call):
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response.status_code == 401, err.value
    return str(err.value)


def test_reader_key_reads_an_array_but_every_write_is_refused(served):
    reader = served.reader_client()
    np.testing.assert_array_equal(reader["a"].read(), np.arange(12).reshape(3, 4))
    assert reader["a"].metadata["kind"] == "test"
    assert "Requires scopes" in _refused(lambda: reader.write_array(np.zeros(3), key="intruder"))
    _refused(lambda: reader["a"].update_metadata({"kind": "vandalised"}))
    _refused(lambda: reader.delete_contents("a", external_only=False))
    assert "intruder" not in served.client() and served.client()["a"].metadata["kind"] == "test"


def test_writer_key_is_the_one_given_and_writes_and_deletes(served):
    assert served.writer_key == GIVEN_WRITER_KEY
    assert served.layout.key_file.read_text().strip() == GIVEN_WRITER_KEY
    writer = from_uri(served.uri, api_key=GIVEN_WRITER_KEY)
    runs = writer.create_container("runs")
    runs.write_array(np.ones(5), key="b")
    runs["b"].update_metadata({"checked": True})
    assert served.reader_client()["runs"]["b"].metadata["checked"] is True
    writer.delete_contents("runs", recursive=True, external_only=False)
    assert "runs" not in served.reader_client()


def test_generated_reader_key_is_long_random_and_distinct(served):
    key = served.reader_key
    assert len(key) >= 32 and all(c in "0123456789abcdef" for c in key)
    assert key != served.writer_key and key != new_key()


def test_anonymous_and_foreign_keys_are_refused_by_a_private_server(served):
    for headers in ({}, {"Authorization": "Apikey " + new_key()}):
        assert httpx.get(f"{served.uri}/api/v1/metadata/a", headers=headers).status_code == 401
        assert httpx.get(f"{served.uri}/api/v1/array/full/a", headers=headers).status_code == 401
        assert httpx.post(f"{served.uri}/api/v1/metadata/", json={}, headers=headers).status_code == 401


def test_no_key_on_the_command_line_of_the_server_or_a_worker(served):
    keys = (served.writer_key, served.reader_key)
    server_args = _proc_text(served.pid, "cmdline")
    assert "serve config" in server_args and str(served.layout.config_file) in server_args
    for leaked in keys:
        assert leaked not in server_args
        assert leaked not in _proc_text(served.pid, "environ")
        assert leaked not in served.layout.config_file.read_text()
    workers = _start_workers("127.0.0.1:9", "keys-test", served, None)  # no broker: they wait for one
    try:
        for proc in workers:
            args = _proc_text(proc.pid, "cmdline")
            assert "--api-key-file" in args and not any(k in args for k in keys), (proc.poll(), args)
        # each worker read the key from its file and Tiled accepted it (a missing or refused key
        # ends the worker before it starts consuming); then it waits for the broker
        logs = [served.layout.root / f"worker-{kind}.log" for kind in ("catalog", "reconstruction")]
        deadline = time.monotonic() + 120
        while not all('"worker-start"' in log.read_text() for log in logs) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in workers), [log.read_text()[-2000:] for log in logs]
            time.sleep(0.5)
        assert all('"worker-start"' in log.read_text() for log in logs)
        assert all(p.poll() is None for p in workers)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)


def _proc_text(pid: int, name: str) -> str:
    """/proc/PID/NAME with NULs as spaces. Popen returns once exec has begun, a moment before the
    kernel has set up the new program's arguments: until then they read empty."""
    deadline = time.monotonic() + 10
    while not (text := open(f"/proc/{pid}/{name}", "rb").read()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return text.replace(b"\0", b" ").decode()


def test_data_directory_is_private_to_its_owner(served):
    root = served.layout.root
    for name in ("catalog.db", "auth.db", "tiled.yml", "tiled-server.log", "keys/writer", "keys/reader"):
        assert (root / name).is_file(), name
    assert any(p.is_file() for p in served.layout.arrays.rglob("*")), "the server wrote no array file"
    checked = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"
        checked += 1
    assert checked > 10


def test_weak_keys_are_refused_and_the_stored_key_is_untouched(served, tmp_path):
    key_file = served.layout.key_file
    before = (key_file.read_text(), key_file.stat().st_mtime_ns)
    for weak in ("a", "0" * 31, "g" * 32, "ab" * 15 + "c", "ab" * 16 + " x"):
        with pytest.raises(KeyRefused, match="at least 32 hexadecimal digits"):
            TiledServer(served.layout.root, writer_key=weak)
    with pytest.raises(RuntimeError, match="already holds a different writer key"):
        TiledServer(served.layout.root, writer_key=new_key())
    # from the command line too: one error line, the key never echoed, nothing started or stored
    weak_file = tmp_path / "weak.key"
    weak_file.write_text("shortkey1\n")
    done = subprocess.run([sys.executable, "-m", "tomobluesky.cli", "serve", "--data-dir", str(served.layout.root),
                           "--writer-key-file", str(weak_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "at least 32 hexadecimal digits" in done.stderr and "shortkey1" not in done.stderr
    assert (key_file.read_text(), key_file.stat().st_mtime_ns) == before
    # a weak key for a new directory: refused before anything is written
    with pytest.raises(KeyRefused):
        TiledServer(tmp_path / "fresh", reader_key="1234")
    assert not (tmp_path / "fresh").exists()


def test_key_arguments_are_refused_without_echoing_the_key():
    secret = "f00d" * 16
    for cmd in (["tomobluesky.workers", "catalog", "--tiled-uri", "http://127.0.0.1:9", "--api-key", secret],
                ["tomobluesky.cli", "ls", "--api-key", secret]):
        done = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "--api-key is not accepted" in done.stderr
        assert secret not in done.stderr + done.stdout
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    done = subprocess.run([sys.executable, "-m", "tomobluesky.workers", "catalog", "--tiled-uri", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and f"set {KEY_ENV} or give --api-key-file" in done.stderr


def test_keys_persist_across_a_restart_and_public_allows_anonymous_reads_only(served, monkeypatch):
    """Runs last: it restarts the module's server, public this time."""
    files = {p: (p.read_text(), p.stat().st_mtime_ns) for p in (served.layout.key_file, served.layout.reader_key_file)}
    writer_key, reader_key = served.writer_key, served.reader_key
    served.stop()
    monkeypatch.setenv(KEY_ENV, writer_key)  # a key in our environment must not reach the tiled child
    with TiledServer(served.layout.root, port=served.port, public=True) as again:
        assert (again.writer_key, again.reader_key) == (writer_key, reader_key)
        assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in files} == files
        assert writer_key not in _proc_text(again.pid, "environ")
        np.testing.assert_array_equal(from_uri(again.uri, api_key=reader_key)["a"].read(), np.arange(12).reshape(3, 4))
        from_uri(again.uri, api_key=writer_key).write_array(np.arange(3), key="after-restart")
        anonymous = from_uri(again.uri)
        np.testing.assert_array_equal(anonymous["after-restart"].read(), np.arange(3))
        _refused(lambda: anonymous.write_array(np.zeros(2), key="anon"))
        _refused(lambda: anonymous["a"].update_metadata({"kind": "anon"}))
        _refused(lambda: anonymous.delete_contents("a", external_only=False))
        assert httpx.delete(f"{again.uri}/api/v1/metadata/a").status_code == 401
        _refused(lambda: from_uri(again.uri, api_key=reader_key).write_array(np.zeros(2), key="r"))
