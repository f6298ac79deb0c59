"""MLflow tracking: one run per stage, nested under the pipeline's parent run when there is one.

Library functions never track; a stage's CLI command calls :func:`stage_run` (or
:func:`log_stage`) once its work is done or while it trains. Where runs go:

* ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///results/mlflow.db`` (relative to the cwd);
* experiment ``DWNAS_EXPERIMENT`` if set, else ``dwnas``;
* nested under ``DWNAS_PARENT_RUN_ID`` when the pipeline set one;
* ``DWNAS_TRACKING=0`` turns tracking off (benchmarks, quick experiments).

Telemetry is switched off before mlflow is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///results/mlflow.db"
_EXTRA_TAGS: dict[str, str] = {}


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
    return os.environ.get("DWNAS_TRACKING", "1").lower() not in {"0", "false", "off", "no"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return mlflow


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


class StageRun:
    """A live stage run; a no-op when tracking is off."""

    def __init__(self, mlflow=None, run=None):
        self._mlflow = mlflow
        self.run_id = run.info.run_id if run is not None else None

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics(numeric_metrics(metrics), step=step)

    def log_artifact(self, path: str | os.PathLike) -> None:
        if self._mlflow is not None and Path(path).exists():
            self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | None = None) -> Iterator[StageRun]:
    """Open an MLflow run for ``stage`` with its params and the standard tags."""
    if not enabled():
        yield StageRun()
        return
    mlflow = _mlflow()
    mlflow.set_experiment(os.environ.get("DWNAS_EXPERIMENT", "dwnas"))
    parent = os.environ.get("DWNAS_PARENT_RUN_ID")
    tags = {
        "dwnas.stage": stage,
        "dwnas.git_commit": git_commit(),
        "dwnas.device": device_description(),
    }
    tags.update(_EXTRA_TAGS)
    if os.environ.get("DWNAS_PARAMS_HASH"):
        tags["dwnas.params_hash"] = os.environ["DWNAS_PARAMS_HASH"]
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=stage, tags=tags) as run:
        if params:
            flat = {
                k: json.dumps(v) if isinstance(v, list | dict) else v
                for k, v in flatten(params).items()
            }
            mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
        yield StageRun(mlflow, run)


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


def start_pipeline_run(experiment: str, params: Mapping[str, Any], params_file: str) -> str | None:
    """The parent run of one pipeline invocation; stage runs nest under it (DWNAS_PARENT_RUN_ID)."""
    if not enabled():
        return None
    mlflow = _mlflow()
    mlflow.set_experiment(experiment)
    client = mlflow.MlflowClient()
    exp = mlflow.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name="pipeline", tags={
        "dwnas.stage": "pipeline", "dwnas.git_commit": git_commit(),
        "dwnas.device": device_description(), "dwnas.params_file": params_file,
        "dwnas.params_hash": os.environ.get("DWNAS_PARAMS_HASH", ""),
    })
    for key, value in flatten(params).items():
        client.log_param(run.info.run_id, key, json.dumps(value) if isinstance(value, list) else str(value))
    return run.info.run_id


def end_pipeline_run(run_id: str | None, status: str) -> None:
    if run_id and enabled():
        _mlflow().MlflowClient().set_terminated(run_id, status=status)
