"""Every document of a run is keyed by its start uid."""

from tomobluesky.transport._keys import RunKeys


def test_every_document_maps_to_its_start(RE, documents):
    from bluesky.plans import count, scan
    from ophyd.sim import det, motor  # simulated point detector and motor

    RE(count([det], 4))
    RE(scan([det], motor, 0, 1, 3))
    keys = RunKeys()
    starts = []
    for name, doc in documents:
        if name == "start":
            starts.append(doc["uid"])
        assert keys.key(name, doc) == starts[-1], name
    assert len(starts) == 2
    assert keys._owner == {}  # forgotten at each stop
