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


def test_strict_keys_do_not_guess(RE, documents):
    """A consumer that joins mid-run must not attribute documents to another run."""
    from bluesky.plans import count
    from ophyd.sim import det

    RE(count([det], 2))
    RE(count([det], 2))
    second = [i for i, (n, _) in enumerate(documents) if n == "start"][1]
    keys = RunKeys(strict=True)
    keys.key(*documents[second])  # the second run's start
    first_run_event = next(d for n, d in documents[:second] if n == "event")
    assert keys.key("event", first_run_event) is None
    assert keys.key("stop", documents[second - 1][1]) == documents[0][1]["uid"]  # stops name their run
