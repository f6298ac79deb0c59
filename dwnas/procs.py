"""Processes: which ones are alive, and worker pools that die with the process that made them.

A stage killed with SIGKILL runs no cleanup, so what it leaves behind is recognised by its owner:
temporary names carry the writer's pid and start time (:func:`owner_tag`), and a later start
removes those whose writer is gone (:func:`owner_alive`). Pool workers ask the kernel for SIGKILL
when their parent dies (``PR_SET_PDEATHSIG``), so a killed ``data prepare --workers N`` leaves no
workers running.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_OWNER = re.compile(r"\.p(\d+)-(\d*)\.(?:tmp|old)$")


def proc_start(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux ``/proc``), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` runs on this machine (and is the one started at ``start`` ticks,
    when given: a recycled pid does not count). A zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal check is all there is
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] in ("Z", "X"):
        return False
    return not start or (len(fields) > 19 and fields[19] == start)


def owner_tag() -> str:
    """``p<pid>-<start>``: put into a temporary name so a later run can tell if its writer lives."""
    return f"p{os.getpid()}-{proc_start(os.getpid())}"


def owner_alive(name: str) -> bool:
    """Whether the writer named in a temporary file's name still runs (False: no name in it)."""
    match = _OWNER.search(name)
    return bool(match) and process_alive(int(match.group(1)), match.group(2))


def die_with_parent(parent: int) -> None:
    """Pool-worker initializer: SIGKILL this process when ``parent`` dies (Linux), and exit now
    if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent check below still runs once
        pass
    if os.getppid() != parent:
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process (see :func:`die_with_parent`)."""
    return ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                               initargs=(os.getpid(),))
