"""Fixtures that start real services: a ``tiled serve`` process (and the Kafka broker)."""

from __future__ import annotations

import pytest

from tomobluesky.catalog import TiledServer


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory):
    """A real Tiled server over a fresh data directory, for the whole session."""
    with TiledServer(tmp_path_factory.mktemp("catalog")) as server:
        yield server


@pytest.fixture
def tiled_client(tiled_server):
    return tiled_server.client()
