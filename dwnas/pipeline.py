"""``dwnas run``: the workflow as ``make run`` runs it, restartable after any kill.

Snakemake alone needs manual steps after a kill (``--unlock``; its jobs outlive it). This command
wraps one ``snakemake`` invocation in the project directory:

- **Stale lock**: a snakemake killed with SIGKILL leaves ``.snakemake/locks/``. When no live
  snakemake process works in this directory (Linux: ``/proc``), the lock is stale and is removed
  with ``snakemake --unlock``; when one does, the run stops with an ``error:`` line naming its pid.
  Incomplete outputs of killed jobs are re-run by the default profile's ``rerun-incomplete``.
- **No orphan jobs**: snakemake runs in its own process group with every job it starts. A signal
  to this command (Ctrl-C, SIGTERM, SIGHUP) goes to the whole group; when snakemake ends for any
  reason (also SIGKILL), what is left of the group is stopped. If this command itself is killed,
  snakemake gets SIGKILL (parent-death signal) and each ``dwnas`` stage stops itself within a
  second (it follows the pid in ``DWNAS_RUNNER_PID``, see :func:`follow_runner`).
- **DVC agrees**: with ``--dvc-commit``, a successful run of the params file that ``dvc.yaml``
  versions ends with ``dvc commit -f``, which records this run's outputs in ``dvc.lock`` (so
  ``dvc status`` is clean, ``dvc push`` pushes them and ``dvc checkout`` restores them).
- **Failures in a few lines**: a failed run ends with the last lines of each failed job's log,
  the ``error:`` line among them, below Snakemake's own report of the job.

What the Snakefile itself derives from the params (paths, flags, code digests, the resources a
profile grants) is in :mod:`dwnas.workflow`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from dwnas.errors import DwnasError

RUNNER_ENV = "DWNAS_RUNNER_PID"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# Processes ----------------------------------------------------------------------------------


def _cmdline(pid: str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_snakemake(argv: list[str]) -> bool:
    head = argv[:3]
    return any(Path(a).name == "snakemake" for a in head) or (
        "-m" in head and "snakemake" in argv[:4])


def _workdir_of(pid: str, argv: list[str]) -> Path | None:
    """The directory a snakemake process works in: ``--directory``/``-d`` or its cwd."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    for flag in ("-d", "--directory"):
        if flag in argv[:-1]:
            return (cwd / argv[argv.index(flag) + 1]).resolve()
        for arg in argv:
            if arg.startswith(flag + "="):
                return (cwd / arg.split("=", 1)[1]).resolve()
    return cwd.resolve()


def live_snakemakes(workdir: Path) -> list[int] | None:
    """Pids of snakemake processes working in ``workdir``; None where it cannot be known (no
    /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return None
    workdir = workdir.resolve()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _cmdline(entry.name)
        if argv and _is_snakemake(argv) and _workdir_of(entry.name, argv) == workdir:
            found.append(int(entry.name))
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (Linux: ``/proc/<pid>/stat``), zombies left out."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def stop_group(pgid: int, grace_s: float = 5.0) -> list[int]:
    """SIGTERM then, after ``grace_s``, SIGKILL to what is left of process group ``pgid``;
    returns the pids that were still there."""
    left = group_members(pgid)
    if not left:
        return []
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return left
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return left


def follow_runner(environ: Mapping[str, str] = os.environ) -> None:
    """In a ``dwnas`` stage started by ``dwnas run``: terminate this process (SIGTERM) as soon as
    that runner is gone, so a killed ``make run`` leaves no job behind. A no-op elsewhere."""
    value = environ.get(RUNNER_ENV)
    if not value or not value.isdigit():
        return
    pid = int(value)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, macOS) or already gone
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has exited
        else:
            while not gone():
                time.sleep(1.0)
        print(f"dwnas run (pid {pid}) is gone: stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-runner", daemon=True).start()


def _die_with_parent() -> None:
    """In the snakemake child, before exec: SIGKILL when ``dwnas run`` dies (Linux prctl)."""
    os.setpgrp()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# DVC ----------------------------------------------------------------------------------------


def dvc_params_file(project: Path) -> Path | None:
    """The params file ``dvc.yaml`` versions (its ``vars:`` entry ``params/<file>.yaml:...``)."""
    import yaml

    path = project / "dvc.yaml"
    if not path.is_file():
        return None
    for entry in (yaml.safe_load(path.read_text()) or {}).get("vars", []):
        if isinstance(entry, str) and entry.split(":", 1)[0].endswith((".yaml", ".yml")):
            return project / entry.split(":", 1)[0]
    return None


def dvc_commit(project: Path, params: Path) -> int:
    """``dvc commit -f`` after a complete run of the params file dvc.yaml versions."""
    versioned = dvc_params_file(project)
    if versioned is None or versioned.resolve() != params.resolve():
        print(f"dvc: dvc.yaml versions {versioned}, not {params}: dvc.lock left as it is",
              file=sys.stderr, flush=True)
        return 0
    dvc = shutil.which("dvc")
    if dvc is None:
        raise DwnasError("dvc not found on PATH (pip install -e .): cannot record the run in dvc.lock")
    print("dvc: recording this run's outputs in dvc.lock (dvc commit -f)", file=sys.stderr,
          flush=True)
    times = modification_times(project / "results")
    rc = subprocess.call([dvc, "commit", "-f", "--quiet"], cwd=project)
    restore_modification_times(times)
    return rc


def modification_times(root: Path) -> dict[Path, tuple[int, int]]:
    """``(atime_ns, mtime_ns)`` of every file and folder under ``root``."""
    if not root.is_dir():
        return {}
    times = {}
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(OSError):
            st = path.lstat()
            times[path] = (st.st_atime_ns, st.st_mtime_ns)
    return times


def restore_modification_times(times: dict[Path, tuple[int, int]]) -> None:
    """Put back the times :func:`modification_times` saw. ``dvc commit`` moves each output into
    its cache and copies it back: same bytes, a new modification time, in DVC's order, which
    Snakemake's mtime trigger would read as inputs newer than outputs. Folders last (re-creating
    their files changes them)."""
    for path, (atime, mtime) in sorted(times.items(), key=lambda item: -len(item[0].parts)):
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime_ns != mtime:
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)


# The command --------------------------------------------------------------------------------


def unlock_if_stale(project: Path, snakemake: list[str]) -> None:
    locks = project / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return
    live = live_snakemakes(project)
    if live is None:
        raise DwnasError(f"{locks}: locked, and without /proc it cannot be told whether a "
                         f"snakemake still runs here; if none does, run: snakemake --unlock")
    if live:
        raise DwnasError(f"{project}: snakemake (pid {', '.join(map(str, live))}) is running in "
                         f"this directory; wait for it or stop it first")
    print(f"snakemake: removing the stale lock {locks} of a snakemake that is no longer running",
          file=sys.stderr, flush=True)
    done = subprocess.run([*snakemake, "--unlock"], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise DwnasError(f"snakemake --unlock failed in {project}: "
                         f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def run(args: argparse.Namespace) -> int:
    project = Path.cwd()
    if not (project / "Snakefile").is_file():
        raise DwnasError(f"{project}: no Snakefile here (run from the project's root)")
    params = Path(args.configfile)
    if not params.is_file():
        raise DwnasError(f"{params}: params file not found")
    from dwnas.config import check_all, read_params

    # the Snakefile runs the same check, but Snakemake reads the file first: random bytes there
    # were its UnicodeDecodeError traceback
    check_all(read_params(params), str(params))
    exe = shutil.which("snakemake")
    if exe is None:
        raise DwnasError("snakemake not found on PATH (pip install -e .)")
    extra = args.snakemake[1:] if args.snakemake[:1] == ["--"] else args.snakemake
    # the extra arguments first: --configfile takes several values, so targets after it would
    # be read as more params files
    snakemake = [exe, *extra, "--cores", str(args.cores), "--configfile", str(params)]
    unlock_if_stale(project, snakemake)

    started = time.time()
    child = subprocess.Popen(snakemake, cwd=project, env={**os.environ, RUNNER_ENV: str(os.getpid())},
                             preexec_fn=_die_with_parent)
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        rc = child.wait()
    finally:
        left = stop_group(child.pid)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if left:
        print(f"dwnas run: stopped {len(left)} process(es) snakemake left behind "
              f"(pids {', '.join(map(str, left))})", file=sys.stderr, flush=True)
    if rc < 0:
        print(f"dwnas run: snakemake was killed by signal {-rc}; `make run` again resumes",
              file=sys.stderr, flush=True)
        return 128 - rc
    if rc != 0 and not forwarded:
        print_failed_jobs(project, started)
    if rc != 0 or forwarded:
        return rc or 130
    if args.dvc_commit and not extra:
        return dvc_commit(project, params)
    return 0


FAILED_RULE = re.compile(r"^Error in rule (\S+):$")
TAIL_LINES = 15


def failed_jobs(snakemake_log: str) -> list[tuple[str, list[str]]]:
    """(rule, its log files) of every "Error in rule" block of a Snakemake log."""
    found, lines = [], snakemake_log.splitlines()
    for n, line in enumerate(lines):
        match = FAILED_RULE.match(line)
        if not match:
            continue
        logs = []
        for detail in lines[n + 1:]:
            if not detail.startswith(" "):
                break
            if detail.strip().startswith("log: "):
                listed = detail.strip()[len("log: "):].split(" (check log file")[0]
                logs = [name.strip() for name in listed.split(",") if name.strip()]
        found.append((match.group(1), logs))
    return found


def print_failed_jobs(project: Path, since: float) -> None:
    """The last lines of each failed job's log, as the run's last words: Snakemake's own error
    block lists the job's inputs and its whole shell line, and the job's error is easily lost
    above them."""
    logs = [p for p in (project / ".snakemake" / "log").glob("*.snakemake.log")
            if p.stat().st_mtime >= since - 1]
    if not logs:
        return
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    for rule, files in failed_jobs(newest.read_text(errors="replace")):
        for name in files:
            path = project / name
            if not path.is_file():
                print(f"dwnas run: rule {rule} failed; its log {name} was not written",
                      file=sys.stderr)
                continue
            tail = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            print(f"dwnas run: rule {rule} failed; the last {len(tail)} lines of {name}:",
                  *(f"    {line}" for line in tail), sep="\n", file=sys.stderr)
    sys.stderr.flush()


def register(sub) -> None:
    parser = sub.add_parser(
        "run", help="run the pipeline (snakemake), restartable after a kill",
        description="Run snakemake on a params file in this project: a stale lock of a killed "
        "snakemake is removed, snakemake and its jobs stop together, and --dvc-commit records a "
        "complete run in dvc.lock. Extra arguments after -- go to snakemake.")
    parser.add_argument("--cores", default="all", help="snakemake --cores (default: all)")
    parser.add_argument("--configfile", default="params/default.yaml", help="params file")
    parser.add_argument("--dvc-commit", action="store_true",
                        help="after a complete run of the params file dvc.yaml versions, "
                        "record its outputs in dvc.lock (dvc commit -f)")
    parser.add_argument("snakemake", nargs=argparse.REMAINDER,
                        help="-- then extra snakemake arguments (targets, -n, ...)")
    parser.set_defaults(func=run)
