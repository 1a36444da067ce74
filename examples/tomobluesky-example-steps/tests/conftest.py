import pytest


@pytest.fixture
def RE():
    """A Bluesky RunEngine, as in an IPython session at the beamline."""
    from bluesky import RunEngine

    engine = RunEngine({}, call_returns_result=False)
    yield engine
    if engine.state != "idle":
        engine.halt()
