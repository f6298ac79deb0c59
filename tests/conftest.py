"""Shared test setup: tracking goes to a per-test SQLite store (or is off), torch stays on few threads."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
USER_STORE = REPO / "results" / "mlflow.db"

# Isolation for the whole session, set before any fixture runs (module- and session-scoped ones
# included): tracking off and pointed at a throwaway store, never at the user's results/mlflow.db.
# Tests that track turn it on with `tracking_on` (a per-test store).
SESSION_STORE = Path(tempfile.mkdtemp(prefix="dwnas-test-mlflow-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{SESSION_STORE}/mlflow.db"
os.environ["DWNAS_TRACKING"] = "0"
for _name in ("DWNAS_PARENT_RUN_ID", "DWNAS_EXPERIMENT", "DWNAS_PARAMS_HASH"):
    os.environ.pop(_name, None)


def _fingerprint(path: Path):
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None


@pytest.fixture(scope="session", autouse=True)
def _user_store_untouched():
    """The user's store is the same after the session as before it (else the session errors)."""
    before = _fingerprint(USER_STORE)
    yield
    assert _fingerprint(USER_STORE) == before, f"the tests changed {USER_STORE}"
    shutil.rmtree(SESSION_STORE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Never touch results/mlflow.db from a test; tracking is off unless a test turns it on."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DWNAS_TRACKING", "0")
    monkeypatch.delenv("DWNAS_PARENT_RUN_ID", raising=False)


@pytest.fixture
def tracking_on(monkeypatch, tmp_path):
    """Turn MLflow tracking on (to the per-test store); yields the tracking URI."""
    monkeypatch.setenv("DWNAS_TRACKING", "1")
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A small prepared synth dataset (4 classes, 24 train / 6 val images each) shared by the
    training and transform tests."""
    from dwnas.cli import main

    root = tmp_path_factory.mktemp("data")
    assert main(["data", "synth", "--out", str(root / "raw"), "--classes", "4",
                 "--train-per-class", "24", "--val-per-class", "6", "--image-size", "40",
                 "--seed", "0"]) == 0
    assert main(["data", "prepare", "--root", str(root / "raw"), "--subset", "all",
                 "--out", str(root / "prepared"), "--on-corrupt", "fail"]) == 0
    return root / "prepared"
