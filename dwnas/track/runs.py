"""Stage runs: the run of a ``dwnas`` command (:func:`begin_command` .. :func:`end_command`) and
what a stage's code logs on it (:func:`stage_run`, :func:`log_stage`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dwnas.track.describe import (
    _param_values,
    device_description,
    git_commit,
    numeric_metrics,
    run_name,
)
from dwnas.track.liveness import end_dead_runs, process_tags
from dwnas.track.store import _STATE, _guard, connect, enabled, experiment_id

_EXTRA_TAGS: dict[str, str] = {}  # --tag KEY=VALUE, on every stage run of this process
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
