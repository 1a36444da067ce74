"""tomobluesky._priority: helper processes run below the RunEngine's CPU priority, sessions included."""

import os
import subprocess
import sys
import time

import pytest

from tomobluesky._priority import autogroup_nice, lower_priority

SLEEPER = "import threading, time; [threading.Thread(target=time.sleep, args=(60,)).start() for _ in range(2)]; time.sleep(60)"


def _start(new_session: bool) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=new_session)
    deadline = time.monotonic() + 20
    while len(os.listdir(f"/proc/{proc.pid}/task")) < 3:  # the two threads started
        assert time.monotonic() < deadline, "the child never started its threads"
        time.sleep(0.02)
    return proc


def _thread_nices(pid: int) -> list[int]:
    return [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.fixture
def own_nice():
    return os.getpriority(os.PRIO_PROCESS, 0)


def test_every_thread_of_the_process_is_lowered_relative_to_ours(own_nice):
    proc = _start(new_session=True)
    try:
        done = lower_priority(proc.pid, 7)
        assert _thread_nices(proc.pid) == [min(own_nice + 7, 19)] * 3
        assert done["threads"] == 3 and done["thread_nice"] == min(own_nice + 7, 19)
        if autogroup_nice() is not None:  # a kernel with autogroups: the server's session is lowered too
            assert autogroup_nice(proc.pid) == min(autogroup_nice() + 7, 19) == done["autogroup_nice"]
    finally:
        proc.kill()
        proc.wait()


def test_a_process_in_our_own_session_leaves_the_shared_autogroup_alone(own_nice):
    before = autogroup_nice()
    proc = _start(new_session=False)
    try:
        done = lower_priority(proc.pid, 5)
        assert _thread_nices(proc.pid) == [min(own_nice + 5, 19)] * 3
        assert "autogroup_nice" not in done
        assert autogroup_nice() == before  # lowering it would have lowered this process (the RunEngine) too
    finally:
        proc.kill()
        proc.wait()


def test_nothing_changes_at_zero_and_the_niceness_is_clamped(own_nice):
    proc = _start(new_session=True)
    try:
        group = autogroup_nice(proc.pid)
        assert lower_priority(proc.pid, 0) == {}
        assert _thread_nices(proc.pid) == [own_nice] * 3 and autogroup_nice(proc.pid) == group
        assert lower_priority(proc.pid, 40)["thread_nice"] == 19
        assert _thread_nices(proc.pid) == [19] * 3
    finally:
        proc.kill()
        proc.wait()


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_idle_puts_every_thread_under_sched_idle_and_later_threads_inherit_it(own_nice):
    proc = _start(new_session=False)
    try:
        assert _policies(proc.pid) == {os.SCHED_OTHER}
        done = lower_priority(proc.pid, 0, idle=True)
        assert _policies(proc.pid) == {os.SCHED_IDLE}
        assert done["idle_threads"] == done["threads"] == 3
        assert _thread_nices(proc.pid) == [own_nice] * 3  # nice 0: the niceness is left as it was
    finally:
        proc.kill()
        proc.wait()


def test_a_process_can_lower_itself_and_the_threads_it_starts_afterwards_inherit_it():
    """What an OffProcess child does first: every thread it has (NumPy's OpenBLAS workers among them)
    and every thread it starts later run idle and niced."""
    code = ("import os, threading, numpy; from tomobluesky._priority import lower_priority; "
            "lower_priority(os.getpid(), 4, idle=True); "
            "t = threading.Thread(target=lambda: print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))); "
            "t.start(); t.join(); "
            "print(*{(os.sched_getscheduler(int(x)), os.getpriority(os.PRIO_PROCESS, int(x))) for x in os.listdir('/proc/self/task')})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    own = min(os.getpriority(os.PRIO_PROCESS, 0) + 4, 19)
    assert out[0] == f"{os.SCHED_IDLE} {own}" and out[1] == f"({os.SCHED_IDLE}, {own})"
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller is untouched
