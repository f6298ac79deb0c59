"""The MLflow store: where runs go, created and migrated once under a file lock, and the guard
that turns a tracking failure into one warning (tracking never fails a stage)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///results/mlflow.db"
ARTIFACTS_DIR = "mlartifacts"  # beside the SQLite database

# URIs whose store is ready; whether tracking failed in this process (and said so)
_STATE: dict[str, Any] = {"ready": set(), "broken": False, "warned": False}


def enabled() -> bool:
    return (os.environ.get("DWNAS_TRACKING", "1").lower() not in {"0", "false", "off", "no"}
            and not _STATE["broken"])


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str | None = None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative or absolute), else None."""
    uri = uri or tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


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
