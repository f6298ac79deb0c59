"""Process liveness: the tags that say which process wrote a run, and the ending (``KILLED``) of
runs whose process is gone."""

from __future__ import annotations

import os
import socket
import sys

from dwnas.track.store import connect


def _pid_namespace() -> str:
    """This process's pid namespace (two containers may share a host name, never pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_tags() -> dict[str, str]:
    from dwnas.procs import proc_start

    return {"dwnas.host": socket.gethostname(), "dwnas.pid": str(os.getpid()),
            "dwnas.pid_start": proc_start(os.getpid()), "dwnas.pid_ns": _pid_namespace()}


def end_dead_runs(client=None) -> list[str]:
    """End, as ``KILLED``, the ``RUNNING`` runs this host's dwnas processes (same host name and
    pid namespace) left behind: a kill gives a process no chance to end its run. Returns their
    ids."""
    from dwnas.procs import process_alive

    client = client or connect().MlflowClient()
    host = socket.gethostname()
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    ended = []
    runs = client.search_runs(
        ids, filter_string=f"attributes.status = 'RUNNING' and tags.`dwnas.host` = '{host}'",
        max_results=1000)
    for run in runs:
        tags = run.data.tags
        try:
            pid = int(tags.get("dwnas.pid", ""))
        except ValueError:
            continue
        if tags.get("dwnas.pid_ns", "") != _pid_namespace():
            continue  # another container's process: its pid means nothing here
        if pid == os.getpid() or process_alive(pid, tags.get("dwnas.pid_start", "")):
            continue
        client.set_tag(run.info.run_id, "dwnas.ended_by",
                       f"process {pid} on {host} was gone at the next dwnas start")
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    if ended:
        print(f"tracking: ended {len(ended)} run(s) of killed processes as KILLED", file=sys.stderr)
    return ended
