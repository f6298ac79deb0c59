"""The pipeline's parent run: opened by the Snakefile's ``onstart``, the stage runs nest under it,
ended with the report's figures and files (or deleted when no stage ran under it)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwnas.track.describe import device_description, git_commit, numeric_metrics
from dwnas.track.liveness import end_dead_runs, process_tags
from dwnas.track.runs import StageRun
from dwnas.track.store import _guard, connect, enabled, experiment_id, store_lock


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
