"""Atomic writes leave nothing behind on failure; stage runs land in MLflow with tags and metrics."""

from __future__ import annotations

import json

import pytest

from dwnas import io, track


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="^killed$"), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "prepared"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError, match="^killed$"), io.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        io.write_json(tmp_path / "x.json", {"acc": float("nan")})
    assert not (tmp_path / "x.json").exists()
    io.write_json(tmp_path / "x.json", {"acc": None, "reason": "not measured"})
    assert json.loads((tmp_path / "x.json").read_text())["acc"] is None


def test_numeric_metrics_keep_finite_numbers_only():
    summary = {
        "top1": 0.5,
        "nested": {"n": 3, "ok": True, "name": "x"},
        "energy": None,
        "bad": float("inf"),
    }
    assert track.numeric_metrics(summary) == {"top1": 0.5, "nested.n": 3.0}


def test_log_stage_records_a_run(tracking_on, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("DWNAS_EXPERIMENT", "dwnas-test")
    summary_path = tmp_path / "summary.json"
    io.write_json(summary_path, {"top1": 0.75})
    run_id = track.log_stage(
        "data_prepare",
        {"subset": "all", "pack": None},
        {"top1": 0.75, "counts": {"train": 10}},
        [summary_path],
    )
    run = mlflow.get_run(run_id)
    assert run.data.metrics == {"top1": 0.75, "counts.train": 10.0}
    assert run.data.params["subset"] == "all"
    assert run.data.tags["dwnas.stage"] == "data_prepare"
    assert "dwnas.git_commit" in run.data.tags
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]
    assert artifacts == ["summary.json"]


def test_tracking_off_is_a_no_op(tmp_path):
    assert track.log_stage("x", {"a": 1}, {"m": 1.0}) is None
    assert not any(tmp_path.glob("*.db"))
