"""Shared fixtures. System fixtures (real Tiled server, real Kafka broker) live
in tests/system; unit tests need neither."""

from __future__ import annotations

import ast
import gc
import os
import sys
import threading
from pathlib import Path

import pytest

pytest_plugins = ["tests.system.conftest_kafka"]


def _serialise_ast_parse() -> None:
    """CPython before 3.11.9 keeps ast.parse's recursion counter in shared interpreter state, and a
    second parse that starts before the first one ends makes the first fail with "AST constructor
    recursion depth mismatch". Here that second parse comes from drawing a traceback's ^^^ carets
    (3.11 parses the source line): in another thread (a server thread logging an error), or in the
    same thread, when the garbage collector runs a finalizer in the middle of a parse and the
    finalizer's exception is printed (bluesky's PersistentDict, writing to a deleted directory).
    pytest then dies with INTERNALERROR and the rest of the suite never runs. A lock keeps other
    threads out, and the collector is paused for the parse so that no finalizer runs inside it."""
    if sys.version_info >= (3, 11, 9) or getattr(ast.parse, "_serialised", False):
        return
    parse, lock = ast.parse, threading.RLock()

    def serialised(*args, **kwargs):
        with lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return parse(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()

    serialised._serialised = True
    ast.parse = serialised


_serialise_ast_parse()

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


@pytest.fixture
def install_step_plugin(tmp_path, monkeypatch):
    """``install_step_plugin(package, version, source, {step: "module:function"})`` installs a step plugin
    the way pip does (a module and a dist-info with entry points) on ``sys.path`` for one test; the step
    registry is read afresh before and after."""
    from tomobluesky import steps

    def install(package: str, version: str, source: str, entry_points: dict[str, str]) -> None:
        site = tmp_path / "site"
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text(source)
        info = site / f"{package}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        lines = [f"{name} = {target}" for name, target in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(["[tomobluesky.steps]", *lines]) + "\n")
        monkeypatch.syspath_prepend(str(site))
        steps.refresh()

    yield install
    steps.refresh()
