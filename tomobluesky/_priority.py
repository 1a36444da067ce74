"""CPU priority of the helper processes an acquisition host starts (Linux).

Where cores are few, the RunEngine must get the CPU first: everything that can catch up later (the
catalogue server, the callbacks' children) runs at a lower priority. Niceness alone is not enough on
most Linux systems: with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by
default in Debian's and Ubuntu's kernels) the CPU is first shared equally between *sessions*, and
niceness only orders the threads inside one. A server started in its own session
(``start_new_session``, so that a Ctrl-C at the prompt does not reach it) therefore gets as much CPU as
the whole RunEngine process, whatever its niceness. The session's autogroup has a niceness of its own,
written to ``/proc/PID/autogroup``; :func:`lower_priority` sets it with the threads' niceness.

Niceness still lets a low-priority thread that holds a core finish its time slice before a waking RunEngine
thread gets it (about a millisecond on this kernel's fair scheduler, paid several times a frame). The
``SCHED_IDLE`` policy (``idle=True``) does not: a waking thread of normal priority takes the core at once,
and a core that runs only idle-policy threads counts as free when the kernel places a waking thread. It
works between threads of one session only (the sessions' autogroups are compared first), so a process
meant to run idle is kept in the caller's session. It is not the default: on the 2-vCPU virtual machine
where it was measured (docs/benchmarks.md), a busy idle-policy process slowed a scan far more than the
same process at normal priority, because the RunEngine's threads, which wake each other several times a
frame, were then placed on the idle process's CPU and had to preempt it every time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

NICE_MAX = 19


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The niceness of ``pid``'s autogroup, or None where the kernel has no autogroups."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-123 nice 0"
    except OSError:
        return None
    try:
        return int(text.split()[-1])
    except (IndexError, ValueError):
        return None


def lower_priority(pid: int, nice: int, *, idle: bool = False) -> dict:
    """Run process ``pid`` (all its threads, and its session if it leads one) ``nice`` steps below
    this process's CPU priority, clamped to 19; with ``idle`` also under the ``SCHED_IDLE`` policy
    (where the system has it); return what was set.

    The session's autogroup is changed only for a process that leads a session of its own (started
    with ``start_new_session=True``): an autogroup is shared by every process of its session, so
    lowering one in this process's own session would lower the RunEngine too. Lowering needs no
    privilege; raising it back later would.
    """
    done: dict = {}
    if not nice and not idle:
        return done
    target = min(os.getpriority(os.PRIO_PROCESS, 0) + int(nice), NICE_MAX)
    threads = idled = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        # niceness and policy are per thread on Linux; threads started later inherit them from their creator
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), target)
            threads += 1
        except (OSError, ValueError):  # a thread that ended meanwhile
            continue
        if idle and _set_idle(int(task.name)):
            idled += 1
    done["thread_nice"], done["threads"] = target, threads
    if idle:
        done["idle_threads"] = idled
    if os.getsid(pid) == pid:
        group = _lower_autogroup(pid, nice)
        if group is not None:
            done["autogroup_nice"] = group
    return done


def _set_idle(tid: int) -> bool:
    """Put thread ``tid`` (0: the calling thread) under ``SCHED_IDLE``; False where that is impossible."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:  # not Linux
        return False
    try:
        os.sched_setscheduler(tid, policy, os.sched_param(0))
    except OSError:  # a thread that ended meanwhile, or a system that refuses
        return False
    return True


def _lower_autogroup(pid: int, nice: int) -> int | None:
    base = autogroup_nice()
    if base is None:
        return None
    target = min(base + int(nice), NICE_MAX)
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(target))
    except OSError as exc:  # a kernel without write support, or a process already gone
        log.warning("could not lower the CPU priority of process %d's session: %s", pid, exc)
        return None
    return target
