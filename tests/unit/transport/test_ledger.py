"""The commit rule: a partition's offset passes a message only once its run is finished."""

from tomobluesky.transport._ledger import Ledger


def test_interleaved_runs_commit_only_past_finished_runs():
    led = Ledger()
    for offset, run in enumerate(["A", "A", "B", "A", "B", "A"]):
        led.add(offset, run)
    assert led.committable() == 0
    led.finish_run("A", through=5)          # A's stop at offset 5: but B started at 2
    assert led.committable() == 2
    led.add(6, "B")
    led.finish_run("B", through=6)
    assert led.committable() == 7


def test_dead_letters_and_skips_are_done_at_once():
    led = Ledger()
    led.add(0, None, done=True)
    led.add(1, "A")
    led.add(2, None, done=True)
    assert led.committable() == 1
    led.finish_run("A", through=1)
    assert led.committable() == 3


def test_durable_prefix_of_a_run():
    led = Ledger()
    for o in range(4):
        led.add(o, "A")
    led.finish_run("A", through=1)  # a handler that makes every document durable at once
    assert led.committable() == 2
