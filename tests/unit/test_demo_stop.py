"""The Kafka demo's worker processes are always stopped, even one that ignores SIGTERM."""

import subprocess
import sys
import time

from tomobluesky.demo import _stop_workers


def test_stop_workers_terminates_and_kills_a_stubborn_one():
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"  # its SIGTERM handler is in place
    t0 = time.monotonic()
    _stop_workers([polite, stubborn], timeout=1.0)
    assert polite.returncode is not None and stubborn.returncode == -9
    assert time.monotonic() - t0 < 10
