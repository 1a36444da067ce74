"""The profile collection run by a bluesky queueserver: Debian's ``redis-server`` and ``start-re-manager``
started here, ``tomo_scan`` added to the queue and run over the manager's 0MQ API, then the run checked
in the Tiled catalogue (its documents) and in the camera's Data Exchange file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tomobluesky._ports import free_port

pytestmark = pytest.mark.system
PROFILE = Path(__file__).resolve().parents[2] / "profile_collection"
N = 24  # projections


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def redis_address(tmp_path):
    """A private redis-server (no persistence) for the manager's queue, stopped at the end."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (Debian package redis-server; `make install-test` installs it)")
    import redis

    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start (exit code {process.poll()})")
                time.sleep(0.1)
        client.close()
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture
def manager(redis_address, tiled_server, tmp_path):
    """start-re-manager on the profile collection, its documents going to the test's Tiled server."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    control, info = free_port(), free_port()
    env = {**os.environ, "TOMOBLUESKY_DATA_DIR": str(tmp_path / "data"), "TOMOBLUESKY_HEADLESS": "1",
           "TOMOBLUESKY_SOURCE": "phantom", "TOMOBLUESKY_TILED_URI": tiled_server.uri,
           "TOMOBLUESKY_TILED_API_KEY": tiled_server.writer_key,  # in the environment, never on a command line
           "TOMOBLUESKY_VOLUME_DIR": str(tiled_server.layout.volumes), "MPLBACKEND": "Agg"}
    env.pop("TOMOBLUESKY_KAFKA_BOOTSTRAP", None)
    # the manager describes the profile again when the environment opens, into a copy of the shipped file,
    # so the test can tell whether the shipped description still matches the profile
    described = tmp_path / "existing_plans_and_devices.yaml"
    shutil.copy(PROFILE / "existing_plans_and_devices.yaml", described)
    log = open(tmp_path / "manager.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("start-re-manager")),
         "--startup-dir", str(PROFILE / "startup"),
         "--existing-plans-devices", str(described), "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
         "--device-max-depth", "1",  # as the shipped file was generated (docs/queueserver.md)
         "--user-group-permissions", str(PROFILE / "user_group_permissions.yaml"),
         "--redis-addr", redis_address, "--redis-name-prefix", f"tomo_test_{control}",
         "--zmq-control-addr", f"tcp://127.0.0.1:{control}", "--zmq-info-addr", f"tcp://127.0.0.1:{info}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    RM = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control}", zmq_info_addr=f"tcp://127.0.0.1:{info}",
                      timeout_recv=10, timeout_send=10)
    try:
        yield RM, tmp_path / "data", tmp_path / "manager.log", described
        if RM.status()["worker_environment_exists"]:
            RM.environment_close()
            RM.wait_for_idle(timeout=60)
        RM.send_request(method="manager_stop")  # the manager ends its worker and itself
        process.wait(timeout=30)
    finally:
        RM.close()
        _stop(process)
        log.close()


def _wait_for_manager(RM, process_log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            RM.status()
            return
        except Exception:
            if time.monotonic() > deadline:
                pytest.fail(f"the RE manager did not answer:\n{process_log.read_text()[-3000:]}")
            time.sleep(0.3)


def _wait_for_stop(raw, uid: str, timeout: float = 60):
    """The run's metadata once its stop document has reached the catalogue (written off the RunEngine's
    thread, it may arrive after the queue is idle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if uid in raw and raw[uid].metadata.get("stop"):
            return raw[uid]
        time.sleep(0.3)
    pytest.fail(f"run {uid} never reached the catalogue with its stop document")


@pytest.mark.timeout(300)  # with the Tiled server fixture, on a loaded machine
def test_the_queue_runs_tomo_scan_from_the_profile(manager, tiled_server):
    from bluesky_queueserver_api import BPlan
    from bluesky_queueserver_api.comm_base import RequestFailedError

    RM, data_dir, log, described = manager
    _wait_for_manager(RM, log)
    # before the environment opens, the manager knows the plans and devices of the shipped description
    allowed = RM.plans_allowed()["plans_allowed"]
    assert {"tomo_scan", "tomo_fly_scan"} <= set(allowed)
    assert {"camera", "rotation", "shutter", "sample"} <= set(RM.devices_allowed()["devices_allowed"])
    # a plan the description does not know is refused when queued, before anything runs
    with pytest.raises(RequestFailedError, match="tomo_step_scan"):
        RM.item_add(BPlan("tomo_step_scan", ["camera"], "rotation", "shutter", "sample"))
    assert RM.status()["items_in_queue"] == 0

    RM.environment_open()
    RM.wait_for_idle(timeout=90)
    assert RM.status()["worker_environment_exists"], log.read_text()[-3000:]
    # the profile, loaded by the worker, still has what the shipped description says
    assert yaml.safe_load(described.read_text()) == yaml.safe_load(
        (PROFILE / "existing_plans_and_devices.yaml").read_text()), \
        "profile_collection/existing_plans_and_devices.yaml is stale: regenerate it (docs/queueserver.md)"
    added = RM.item_add(BPlan("tomo_scan", ["camera"], "rotation", "shutter", "sample", num_projections=N,
                              num_darks=2, num_flats=3, md={"sample_name": "queued-phantom"}))
    assert added["success"], added["msg"]
    RM.queue_start()
    RM.wait_for_idle(timeout=90)

    item = RM.history_get()["items"][-1]
    assert item["name"] == "tomo_scan" and item["result"]["exit_status"] == "completed", item["result"]
    uid, = item["result"]["run_uids"]
    run = _wait_for_stop(tiled_server.client()["raw"], uid)
    start, stop = run.metadata["start"], run.metadata["stop"]
    assert start["plan_name"] == "tomo_scan" and start["sample_name"] == "queued-phantom"
    assert start["detectors"] == ["camera"] and start["num_projections"] == N
    assert stop["exit_status"] == "success" and stop["num_events"] == {"dark": 2, "flat": 3, "primary": N}
    assert run["primary"]["camera_image"].shape[0] == N

    detector_files = list((data_dir / "detector").glob("*.h5"))
    assert len(detector_files) == 1
    with h5py.File(detector_files[0], "r") as f:
        assert f["/exchange/data"].shape[0] == N
        assert f["/exchange/data_dark"].shape[0] == 2 and f["/exchange/data_white"].shape[0] == 3
        np.testing.assert_allclose(f["/exchange/theta"][:], np.linspace(0, 180, N, endpoint=False))
        # the sample absorbs: projections are darker than the flats, darks darker still
        assert f["/exchange/data_dark"][:].mean() < f["/exchange/data"][:].mean() < f["/exchange/data_white"][:].mean()
