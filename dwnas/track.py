"""MLflow tracking: one run per stage, nested under the pipeline's parent run when there is one.

Library functions never track. The ``dwnas`` command opens its stage's run when it starts
(:func:`begin_command`, so a run's duration covers the work) and ends it when it returns
(``FINISHED``, or ``FAILED`` / ``KILLED``); a stage's code fills it in with :func:`stage_run` or
:func:`log_stage`. Where runs go:

* ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///results/mlflow.db`` (relative to the cwd);
* artifacts of a SQLite store in ``mlartifacts/`` beside the database, recorded by a relative
  location when the store's path is relative (``results/mlartifacts/<experiment id>/...``);
* experiment ``DWNAS_EXPERIMENT`` if set, else ``dwnas``;
* nested under ``DWNAS_PARENT_RUN_ID`` when the pipeline set one;
* ``DWNAS_TRACKING=0`` turns tracking off (benchmarks, quick experiments).

Reliability rules (docs/tracking.md):

* a SQLite store is created and migrated once, under a file lock (``<db>.lock``), before any run
  is written; experiments are created under the same lock;
* tracking never fails a stage: an MLflow error prints one ``warning:`` line and the stage goes on
  untracked (its files are the record; the report is built from them);
* every run carries the host and process that wrote it; a run left ``RUNNING`` by a process that
  is gone (killed) is ended as ``KILLED`` by the next dwnas command that tracks.

Telemetry is switched off before mlflow is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///results/mlflow.db"
ARTIFACTS_DIR = "mlartifacts"  # beside the SQLite database
_EXTRA_TAGS: dict[str, str] = {}
# tags whose values name a stage run, in this order (after the stage's own words)
NAME_TAGS = ("dwnas.method", "dwnas.budget", "dwnas.device", "dwnas.runtime", "dwnas.form")
# commands that are pipeline stages (a run each); the others (params check, data pack, supernet
# init, agent serve) are tools and never open a run
# a command whose stage goes by another name (the name it logs under once it is done)
COMMAND_STAGES = {"compare": "measure"}
# `dwnas run` starts snakemake, whose onstart opens the pipeline's parent run: it has none itself
UNTRACKED = {("data", "pack"), ("supernet", "init"), ("agent", "serve"), ("params", "check"),
             ("run",)}


def set_extra_tags(pairs: list[str]) -> None:
    """Tags (``KEY=VALUE``) added to every stage run of this process, as ``dwnas.KEY``."""
    from dwnas.errors import DwnasError

    _EXTRA_TAGS.clear()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DwnasError(f"--tag {pair!r}: expected KEY=VALUE")
        _EXTRA_TAGS[f"dwnas.{key}"] = value


def enabled() -> bool:
    return (os.environ.get("DWNAS_TRACKING", "1").lower() not in {"0", "false", "off", "no"}
            and not _STATE["broken"])


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str | None = None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative or absolute), else None."""
    uri = uri or tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


# -- the store: created once, under a lock ------------------------------------------------------
_STATE: dict[str, Any] = {"ready": set(), "broken": False, "warned": False}


@contextlib.contextmanager
def store_lock(uri: str | None = None) -> Iterator[None]:
    """An exclusive lock on a SQLite store (``<db>.lock``); a no-op for a tracking server."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect():
    """mlflow, pointed at the tracking URI, its store created and migrated (once, locked): what a
    reader of the runs (the report) opens the store with, as the stage runs here do."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri not in _STATE["ready"]:
        with store_lock(uri):
            # the first client call builds the store: creates the tables or migrates them
            mlflow.MlflowClient().search_experiments(max_results=1)
            _relative_default_experiment(uri)
        _STATE["ready"].add(uri)
    return mlflow


def _artifact_location(db: Path, exp_id: str) -> str:
    """``<db folder>/mlartifacts/<id>``, relative when the database path is (MLflow itself
    records an absolute path, which breaks when the checkout moves)."""
    base = db.parent / ARTIFACTS_DIR / str(exp_id)
    return base.as_posix() if not db.is_absolute() else str(base)


def _set_artifact_location(db: Path, exp_id: str, only_if_like: str | None = None) -> None:
    import sqlite3

    query = "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?"
    values: tuple = (_artifact_location(db, exp_id), int(exp_id))
    if only_if_like:
        query += " AND artifact_location LIKE ?"
        values += (only_if_like,)
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
        con.execute(query, values)


def _relative_default_experiment(uri: str) -> None:
    """MLflow's ``Default`` experiment of a fresh SQLite store points at ``<cwd>/mlruns``; move it
    beside the database like ours."""
    db = sqlite_path(uri)
    if db is not None:
        _set_artifact_location(db, "0", only_if_like="%/mlruns/0")


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created (under the store lock) when missing, with its
    artifacts beside a SQLite database, recorded relative when the database path is."""
    mlflow = connect()
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    with store_lock():
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        db = sqlite_path()
        if db is None:
            return client.create_experiment(name)
        exp_id = client.create_experiment(
            name, artifact_location=str(db.parent.resolve() / ARTIFACTS_DIR / "new"))
        _set_artifact_location(db, exp_id)
        return exp_id


def _warn(exc: BaseException) -> None:
    """Tracking failed: say so once, stop tracking in this process, let the stage go on."""
    _STATE["broken"] = True
    if not _STATE["warned"]:
        _STATE["warned"] = True
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"warning: MLflow tracking at {tracking_uri()} failed ({type(exc).__name__}: "
              f"{first[:300]}); this stage continues untracked (its output files are the record)",
              file=sys.stderr, flush=True)


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a stage
        _warn(exc)


# -- processes: which runs belong to a live one -------------------------------------------------
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


# -- descriptions -------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu:{platform.machine()}:{os.cpu_count()}cores"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``a.b.c`` keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numeric_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric leaves of a summary: what MLflow can hold as metrics."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value == value and abs(value) != float("inf"):
            out[key] = float(value)
    return out


def run_name(stage: str, tags: Mapping[str, str]) -> str:
    """What a stage run ran, in words: ``measure double-win 60pct host onnxruntime``."""
    words = stage.replace("_", " ").split()
    for key in NAME_TAGS:
        value = str(tags.get(key, "")).strip()
        if value and value not in words:
            words.append(value)
    return " ".join(words)


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    flat = {k: json.dumps(v) if isinstance(v, list | dict) else v
            for k, v in flatten(params).items()}
    return {k: str(v)[:6000] for k, v in flat.items()}


# -- runs ---------------------------------------------------------------------------------------
class StageRun:
    """A live stage run; a no-op when tracking is off (or failed)."""

    def __init__(self, client=None, run_id: str | None = None, stage: str = "",
                 tags: Mapping[str, str] | None = None):
        self._client = client
        self.run_id = run_id
        self.stage = stage
        self.tags = dict(tags or {})
        self.params_logged = False

    @property
    def live(self) -> bool:
        return self._client is not None and self.run_id is not None and not _STATE["broken"]

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if not self.live:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, v, now, step or 0) for k, v in numeric_metrics(metrics).items()]
        with _guard():
            for i in range(0, len(values), 1000):
                self._client.log_batch(self.run_id, metrics=values[i:i + 1000])

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.live or not params:
            return
        from mlflow.entities import Param

        values = [Param(k, v) for k, v in _param_values(params).items()]
        with _guard():
            for i in range(0, len(values), 100):
                self._client.log_batch(self.run_id, params=values[i:i + 100])
            self.params_logged = True

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.live and Path(path).exists():
            with _guard():
                self._client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.live:
            return
        from mlflow.entities import RunTag

        self.tags.update({k: str(v) for k, v in tags.items()})
        values = [RunTag(k, str(v)) for k, v in tags.items()]
        values.append(RunTag("mlflow.runName", run_name(self.stage, self.tags)))
        with _guard():  # one transaction
            self._client.log_batch(self.run_id, tags=values)

    def name_stage(self, stage: str) -> None:
        """Set what this run ran (the ``dwnas.stage`` tag and the run's name)."""
        self.stage = stage
        self.set_tags({"dwnas.stage": stage})

    def end(self, status: str) -> None:
        if self.live:
            with _guard():
                self._client.set_terminated(self.run_id, status=status)


def _open_run(stage: str, start_ms: int | None = None) -> StageRun:
    """Create a RUNNING stage run (after ending runs of killed processes); a no-op run when
    tracking is off or fails."""
    if not enabled():
        return StageRun()
    with _guard():
        mlflow = connect()
        client = mlflow.MlflowClient()
        exp = experiment_id(os.environ.get("DWNAS_EXPERIMENT", "dwnas"))
        end_dead_runs(client)
        tags = {"dwnas.stage": stage, "dwnas.git_commit": git_commit(),
                "dwnas.hardware": device_description(), **process_tags(), **_EXTRA_TAGS}
        if os.environ.get("DWNAS_PARAMS_HASH"):
            tags["dwnas.params_hash"] = os.environ["DWNAS_PARAMS_HASH"]
        if os.environ.get("DWNAS_PARENT_RUN_ID"):
            tags["mlflow.parentRunId"] = os.environ["DWNAS_PARENT_RUN_ID"]
        run = client.create_run(exp, start_time=start_ms, tags=tags,
                                run_name=run_name(stage, tags))
        return StageRun(client, run.info.run_id, stage, tags)
    return StageRun()


# The run of the running ``dwnas`` command (begin_command .. end_command)
_COMMAND: dict[str, Any] = {"run": None, "adopted": False}


def command_words(args) -> list[str]:
    """``['baseline', 'hurricane', 'search']`` for ``dwnas baseline hurricane search ...``."""
    words = [getattr(args, "command", None) or ""]
    while getattr(args, f"{words[-1]}_command", None):
        words.append(getattr(args, f"{words[-1]}_command"))
    return words


def begin_command(args, argv: list[str] | None = None) -> StageRun | None:
    """Open the run of a stage command as it starts (so its duration covers the work)."""
    _COMMAND.update(run=None, adopted=False)
    _STATE.update(broken=False, warned=False)
    words = command_words(args)
    if tuple(words[:2]) in UNTRACKED or not enabled():
        return None
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        return None  # relaunched under torchrun: rank 0 of the launched processes tracks
    if os.environ.get("RANK", "0") != "0":
        return None
    stage = "_".join(words)
    run = _open_run(COMMAND_STAGES.get(stage, stage))
    if run.live:
        run.set_tags({"dwnas.command": " ".join(["dwnas", *(argv or [])])[:5000]})
        _COMMAND["run"] = run
    return _COMMAND["run"]


def end_command(status: str) -> None:
    run, _COMMAND["run"] = _COMMAND["run"], None
    if run is not None:
        run.end(status)


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | None = None) -> Iterator[StageRun]:
    """The run of ``stage``: the command's own run when it has one (named ``stage`` now, ended by
    the command), else a run of its own, ended here (``FAILED`` if the block raises)."""
    command = _COMMAND["run"]
    if command is not None and not _COMMAND["adopted"] and os.environ.get("RANK", "0") == "0":
        _COMMAND["adopted"] = True
        command.name_stage(stage)
        command.log_params(params or {})
        yield command
        return
    if os.environ.get("RANK", "0") != "0":
        yield StageRun()
        return
    run = _open_run(stage)
    run.log_params(params or {})
    try:
        yield run
    except BaseException as exc:
        run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    run.end("FINISHED")


def log_stage(
    stage: str,
    params: Mapping[str, Any] | None,
    summary: Mapping[str, Any],
    artifacts: list[str | os.PathLike] = (),  # type: ignore[assignment]
) -> str | None:
    """Record a finished stage: params, the summary's numeric leaves as metrics, artifacts."""
    with stage_run(stage, params) as run:
        run.log_metrics(summary)
        for path in artifacts:
            run.log_artifact(path)
        return run.run_id


# -- the pipeline's parent run -------------------------------------------------------------------
def pipeline_run_name(params_file: str, when: float | None = None) -> str:
    return f"{Path(params_file).name} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}"


def start_pipeline_run(experiment: str, params: Mapping[str, Any], params_file: str) -> str | None:
    """The parent run of one pipeline invocation; stage runs nest under it (DWNAS_PARENT_RUN_ID).

    Named by its params file and start time; :func:`end_pipeline_run` adds the report."""
    if not enabled():
        return None
    with _guard():
        client = connect().MlflowClient()
        exp = experiment_id(experiment)
        end_dead_runs(client)
        tags = {"dwnas.stage": "pipeline", "dwnas.git_commit": git_commit(),
                "dwnas.hardware": device_description(), "dwnas.params_file": params_file,
                "dwnas.params_hash": os.environ.get("DWNAS_PARAMS_HASH", ""), **process_tags()}
        if params.get("name"):
            tags["dwnas.results"] = f"results/{params['name']}"
        run = client.create_run(exp, run_name=pipeline_run_name(params_file), tags=tags)
        StageRun(client, run.info.run_id, "pipeline").log_params(params)
        return run.info.run_id
    return None


def pipeline_environment(name: str, params: Mapping[str, Any]) -> None:
    """Set what every stage of one pipeline invocation reads from its environment: the
    experiment (``dwnas-<name>``) and the params hash. Snakemake's jobs inherit it, on a cluster
    too; :func:`pipeline_started` adds the parent run."""
    from dwnas.config import params_hash

    os.environ["DWNAS_EXPERIMENT"] = f"dwnas-{name}"
    os.environ["DWNAS_PARAMS_HASH"] = params_hash(params)


def pipeline_started(params: Mapping[str, Any], params_file: str) -> None:
    """The Snakefile's ``onstart``: open the parent run and let the stages nest under it."""
    parent = start_pipeline_run(os.environ.get("DWNAS_EXPERIMENT", "dwnas"), params, params_file)
    if parent:
        os.environ["DWNAS_PARENT_RUN_ID"] = parent


def pipeline_ended(status: str) -> None:
    """The Snakefile's ``onsuccess`` (``FINISHED``) and ``onerror`` (``FAILED``)."""
    end_pipeline_run(os.environ.get("DWNAS_PARENT_RUN_ID"), status)


def report_metrics(report: Path) -> dict[str, float]:
    """The report's headline figures: its summary's numbers and each main-table row's top-1,
    speed-up and shallow latency (``<method>.<budget>.<device>.<runtime>.<figure>``)."""
    metrics: dict[str, float] = {}
    summary = report / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        metrics.update(numeric_metrics({k: v for k, v in data.items() if k != "files"}))
    table = report / "main_table.csv"
    if table.is_file():
        import csv

        with open(table, newline="") as handle:
            for row in csv.DictReader(handle):
                key = ".".join(row.get(k, "") for k in ("method", "budget", "device", "runtime"))
                for figure in ("top1", "speedup", "latency_shallow_ms", "latency_deep_ms"):
                    try:
                        value = float(row.get(figure) or "nan")
                    except ValueError:
                        continue
                    if value == value:
                        metrics[f"{key}.{figure}"] = value
    return metrics


REPORT_ARTIFACTS = ("*.md", "*.csv", "*.tex", "*.png", "*.pdf", "*.json")


def log_report(run: StageRun, report: Path) -> None:
    """The report's headline metrics and its tables and figures (under ``report/``) on ``run``."""
    run.log_metrics(report_metrics(report))
    for pattern in REPORT_ARTIFACTS:
        for path in sorted(report.glob(pattern)):
            run.log_artifact(path, "report")


def end_pipeline_run(run_id: str | None, status: str) -> None:
    """End the parent run: a successful pipeline's run gets the report's figures and files; a run
    that no stage ran under (``snakemake --touch``, nothing to do) is deleted rather than kept
    empty."""
    if not run_id or not enabled():
        return
    with _guard():
        client = connect().MlflowClient()
        parent = client.get_run(run_id)
        children = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1)
        if not children:
            store = getattr(getattr(client, "_tracking_client", None), "store", None)
            if hasattr(store, "_hard_delete_run"):  # SQLite: gone, not just hidden
                with store_lock():
                    store._hard_delete_run(run_id)
            else:
                client.delete_run(run_id)
            return
        run = StageRun(client, run_id, "pipeline")
        results = parent.data.tags.get("dwnas.results")
        report_ran = client.search_runs(
            [parent.info.experiment_id], max_results=1, filter_string=(
                f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`dwnas.stage` = 'report' "
                "and attributes.status = 'FINISHED'"))
        # the report this invocation built (not one left by an earlier run of the pipeline)
        if status == "FINISHED" and results and report_ran and (Path(results) / "report").is_dir():
            log_report(run, Path(results) / "report")
        client.set_terminated(run_id, status=status)
