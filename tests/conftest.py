"""Shared fixtures. System fixtures (real Tiled server, real Kafka broker) live
in tests/system; unit tests need neither."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.system.conftest_kafka"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOOTH = Path(os.environ.get("TOMOBLUESKY_TOOTH", SHARED / "data" / "tooth.h5"))


@pytest.fixture(scope="session")
def tooth_path() -> Path:
    """The real APS tooth scan (tomopy project, BSD-3-Clause, (c) 2013-2019 UChicago Argonne, LLC)."""
    if not TOOTH.exists():
        pytest.fail(f"the shared tooth scan is missing: {TOOTH}")
    return TOOTH


@pytest.fixture
def RE():
    from bluesky import RunEngine

    engine = RunEngine({}, call_returns_result=False)
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture
def documents(RE):
    """Every document the RunEngine emits, in order, as (name, doc)."""
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs
