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

Modules, one job each: :mod:`.store` (the store, its lock, the failure guard), :mod:`.liveness`
(which runs belong to a live process), :mod:`.describe` (commit, hardware, metrics, run names),
:mod:`.runs` (stage runs) and :mod:`.parent` (the pipeline's parent run). This package re-exports
their public names, so callers write ``from dwnas import track; track.stage_run(...)``.
"""

from __future__ import annotations

from dwnas.track.describe import (
    NAME_TAGS,
    device_description,
    flatten,
    git_commit,
    numeric_metrics,
    run_name,
)
from dwnas.track.liveness import (
    end_dead_runs,
    process_tags,
)
from dwnas.track.parent import (
    REPORT_ARTIFACTS,
    end_pipeline_run,
    log_report,
    pipeline_ended,
    pipeline_environment,
    pipeline_run_name,
    pipeline_started,
    report_metrics,
    start_pipeline_run,
)
from dwnas.track.runs import (
    COMMAND_STAGES,
    UNTRACKED,
    StageRun,
    begin_command,
    command_words,
    end_command,
    log_stage,
    set_extra_tags,
    stage_run,
)
from dwnas.track.store import (
    ARTIFACTS_DIR,
    DEFAULT_URI,
    connect,
    enabled,
    experiment_id,
    sqlite_path,
    store_lock,
    tracking_uri,
)

__all__ = [
    "ARTIFACTS_DIR",
    "COMMAND_STAGES",
    "DEFAULT_URI",
    "NAME_TAGS",
    "REPORT_ARTIFACTS",
    "StageRun",
    "UNTRACKED",
    "begin_command",
    "command_words",
    "connect",
    "device_description",
    "enabled",
    "end_command",
    "end_dead_runs",
    "end_pipeline_run",
    "experiment_id",
    "flatten",
    "git_commit",
    "log_report",
    "log_stage",
    "numeric_metrics",
    "pipeline_ended",
    "pipeline_environment",
    "pipeline_run_name",
    "pipeline_started",
    "process_tags",
    "report_metrics",
    "run_name",
    "set_extra_tags",
    "sqlite_path",
    "stage_run",
    "start_pipeline_run",
    "store_lock",
    "tracking_uri",
]
