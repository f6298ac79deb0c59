"""Read the pipeline's stage runs back from MLflow as pandas frames.

Runs of one params file share the experiment ``dwnas-<name>`` and the tag ``dwnas.params_hash``.
Snakemake re-runs only what changed, so a table mixes runs of several pipeline invocations: for
each (stage, method, budget, device, form) the latest run wins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dwnas.errors import DwnasError

KEY_TAGS = ["dwnas.stage", "dwnas.method", "dwnas.budget", "dwnas.device", "dwnas.form"]


def load_runs(experiment: str, params_hash: str | None) -> pd.DataFrame:
    """Finished stage runs of ``experiment`` (optionally of one params hash), latest per key."""
    from dwnas.track import connect

    mlflow = connect()
    if mlflow.get_experiment_by_name(experiment) is None:
        raise DwnasError(f"MLflow experiment {experiment!r} not found at {mlflow.get_tracking_uri()}"
                         " - run the pipeline first")
    query = "attributes.status = 'FINISHED'"
    if params_hash:
        query += f" and tags.`dwnas.params_hash` = '{params_hash}'"
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=query,
                              output_format="pandas", max_results=50000)
    if runs.empty:
        return runs
    runs = runs[runs.get("tags.dwnas.stage").notna()].copy()
    for tag in KEY_TAGS:
        column = f"tags.{tag}"
        if column not in runs:
            runs[column] = None
        runs[column] = runs[column].fillna("")
    runs = runs.sort_values("start_time")
    return runs.drop_duplicates([f"tags.{t}" for t in KEY_TAGS], keep="last").reset_index(drop=True)


def metric(row: pd.Series, name: str):
    value = row.get(f"metrics.{name}")
    return None if value is None or pd.isna(value) else float(value)


def measure_artifact(run_id: str) -> dict | None:
    """The measure.json a measure run logged (for its energy reason and device description)."""
    from dwnas.track import connect

    mlflow = connect()
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="")
    except Exception:  # an artifact store that lost the file: the table says so, not crashes
        return None
    files = sorted(Path(path).glob("*.json"))
    return json.loads(files[0].read_text()) if files else None


def metric_history(run_id: str, names: list[str]) -> pd.DataFrame:
    """Per-step history of ``names`` for one run (training curves)."""
    from dwnas.track import connect

    client = connect().MlflowClient()
    rows = []
    for name in names:
        for m in client.get_metric_history(run_id, name):
            rows.append({"metric": name, "step": m.step, "value": m.value})
    return pd.DataFrame(rows, columns=["metric", "step", "value"])
