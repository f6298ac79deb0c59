"""The workflow end to end on params/smoke.yaml, its caching, DVC, MLflow and bad params.

One real run of the whole pipeline (module-scoped, `dvc repro` in a fresh git copy of the repo's
tracked files, so the repo's results/ stays untouched) feeds every check that needs outputs. The
checks that only read it (or dry-run Snakemake on it) share that project; a check that changes a
project (params, outputs, DVC experiments, a real Snakemake run) works on its own copy of it
(`own_copy`), so no test depends on which tests ran before it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
pytestmark = pytest.mark.slow  # end to end: `dvc repro` of the whole smoke pipeline


def env() -> dict:
    out = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DWNAS_TRACKING": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    out.pop("MLFLOW_TRACKING_URI", None)  # the default: sqlite:///results/mlflow.db in the project
    return out


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 1200):
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd[:3]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True):
    return run([str(BIN / "snakemake"), "--cores", "2", "--configfile",
                str(configfile or workdir / "params/smoke.yaml"), *args], workdir, check)


def dvc(workdir: Path, *args: str, check: bool = True):
    return run([str(BIN / "dvc"), *args], workdir, check)


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table (dry-run)."""
    jobs, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                jobs[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return jobs


def make_project(dest: Path) -> Path:
    """A fresh git checkout of the repo's tracked files, with dvc.yaml switched to smoke (and
    without the default params' dvc.lock)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file() and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    dvc_yaml = dest / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("params/default.yaml", "params/smoke.yaml"))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"]):
        run(cmd, dest)
    return dest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The whole pipeline on smoke params, run as users run it with DVC: `dvc repro`."""
    project = make_project(tmp_path_factory.mktemp("project"))
    dvc(project, "repro")
    return project


@pytest.fixture
def own_copy(workdir, tmp_path) -> Path:
    """A copy of the finished project (outputs, DVC cache, Snakemake's records, MLflow store, git),
    modification times kept, for a test that changes what it works on. The checkout's location
    is recorded nowhere, so the copy is as finished as the original."""
    copy = tmp_path / "project"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy


def modification_times(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.timeout(1800)  # the module's one end-to-end `dvc repro` runs in this test's setup
def test_pipeline_produces_the_report(workdir):
    r = workdir / "results/smoke"
    report = r / "report"
    for name in ("main_table.csv", "main_table.md", "main_table.tex", "pareto.png", "pareto.pdf",
                 "deep_vs_shallow.png", "accuracy_vs_resolution.png", "training_curves.png",
                 "lut_fidelity.png", "merge_gains.png", "lut_fidelity_pipeline.json", "summary.json"):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["methods"]) == {"double-win", "deep-only", "mobilenetv2", "depthshrinker",
                                       "hurricane", "odn"}
    import pandas as pd

    table = pd.read_csv(report / "main_table.csv")
    runtimes = SMOKE["measure"]["runtimes"]
    searched = table[table["method"].isin(["double-win", "deep-only"])]
    assert len(searched) == 4 * len(runtimes)  # 2 modes x 2 budgets, per runtime
    assert set(table["runtime"]) == set(runtimes)
    assert table["latency_deep_ms"].gt(0).all() and table["latency_shallow_ms"].gt(0).all()
    assert table["max_rel_err"].dropna().le(1e-5).all()
    assert table["top1"].between(0, 1).all()
    for mode in ("double-win", "deep-only"):
        pareto = pd.read_csv(r / f"search/{mode}/pareto.csv")
        assert list(pareto["budget"]) == ["75pct", "90pct"]
        for budget in ("75pct", "90pct"):
            transform = json.loads((r / f"transform/{mode}/{budget}/transform.json").read_text())
            assert transform["max_rel_err"] <= 1e-5
            # the exported files are the evaluated networks (issue 11)
            reported = pareto.set_index("budget").loc[budget, "top1"]
            assert transform["top1"]["evaluated"] == pytest.approx(reported, abs=1e-9)
            for name in ("deep.pt2", "shallow.pt2", "deep.onnx", "shallow.onnx"):
                assert abs(transform["top1"][name] - reported) <= 0.002, name
            for runtime in runtimes:
                compare = json.loads((r / f"measure/{mode}/{budget}/host/{runtime}.json").read_text())
                for form in compare["forms"].values():
                    measure = form["measure"]
                    assert form["latency_ms"] > 0 and measure["latency_ms"]["median"] > 0
                    assert (measure["energy_per_image_mj"] is None) == bool(measure["energy_reason"])
                speedup = compare["ratios"]["speedup"]
                assert speedup["ci95"][0] <= speedup["ratio"] <= speedup["ci95"][1]
                if not transform["merged"]:  # identical graphs: exactly 1, not a second timing
                    assert speedup == {"ratio": 1.0, "ci95": [1.0, 1.0], "rounds": compare["rounds"],
                                       "identical": True}
                assert ("speedup_vs_deep_only" in compare["ratios"]) == (mode == "double-win")
    assert json.loads((r / "search/deep-only/summary.json").read_text())["mode"] == "deep-only"
    assert pd.read_csv(r / "search/deep-only/pareto.csv")["num_linear"].eq(0).all()


def test_double_win_is_never_less_accurate_than_deep_only(workdir):
    """Issue 11: Double-Win's space contains deep-only's; with one evaluator (the supernet with
    BN recalibration, the same images) and one latency model, its pick at a budget is at least
    as accurate as deep-only's, and identical graphs predict the same latency."""
    import pandas as pd

    from dwnas.search.latency import LatencyTable
    from dwnas.space import Arch

    r = workdir / "results/smoke"
    dw = pd.read_csv(r / "search/double-win/pareto.csv").set_index("budget")
    do = pd.read_csv(r / "search/deep-only/pareto.csv").set_index("budget")
    for budget in do.index:
        assert dw.loc[budget, "top1"] >= do.loc[budget, "top1"], budget
    profile = SMOKE["profile"]
    table = LatencyTable.load(r / f"profile/{profile['device']}/{profile['runtime']}/lut.json")
    for budget in do.index:
        arch = Arch.from_json(do.loc[budget, "arch"])
        assert table.predict(arch, "deep") == table.predict(arch, "shallow")
        assert do.loc[budget, "latency_deep_ms"] == pytest.approx(do.loc[budget, "latency_shallow_ms"])


def test_lut_fidelity_benchmark_reads_a_finished_run(workdir):
    """benchmarks/lut_fidelity.py prints one JSON object on a finished run, agreeing with the
    report's own fidelity figures (it once crashed on the report's `outside` mapping)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/lut_fidelity.py"),
                          "--results", "results/smoke", "--params", "params/smoke.yaml"],
                         cwd=workdir, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    report = json.loads((workdir / "results/smoke/report/summary.json").read_text())
    for runtime, figures in report["lut_fidelity_pipeline"].items():
        assert result["pipeline_networks"][runtime]["n"] == figures["n"]
        assert result["pipeline_networks"][runtime]["mape"] == pytest.approx(figures["mape"])
    assert set(result["outside_the_space"]) == {"mobilenetv2", "hurricane", "odn"}


def test_second_run_does_nothing(own_copy):
    outputs = own_copy / "results/smoke"
    before = modification_times(outputs)
    done = snakemake(own_copy)
    assert "Nothing to be done" in done.stdout + done.stderr
    assert modification_times(outputs) == before  # no output, log or benchmark rewritten
    assert "up to date" in dvc(own_copy, "status").stdout
    assert (own_copy / "dvc.lock").is_file()


def test_dvc_reruns_only_stages_whose_params_changed(own_copy):
    params = own_copy / "params/smoke.yaml"
    changed = yaml.safe_load(params.read_text())
    changed["search"]["generations"] = 3
    params.write_text(yaml.safe_dump(changed, sort_keys=False))
    status = dvc(own_copy, "status").stdout
    stale = {line.rstrip(":").strip() for line in status.splitlines() if line.endswith(":") and not line.startswith("\t")}
    assert {"search", "searched_baselines"} <= stale
    assert {"data", "train", "profile", "static_baselines"}.isdisjoint(stale)


def test_dvc_experiment_with_a_changed_param(own_copy):
    done = dvc(own_copy, "exp", "run", "-S", "params/smoke.yaml:measure.iters=4")
    out = done.stdout + done.stderr
    assert "Running stage 'measure'" in out and "Running stage 'report'" in out
    for upstream in ("data", "train", "profile", "search", "static_baselines",
                     "searched_baselines", "transform"):
        assert f"Running stage '{upstream}'" not in out, upstream
    shown = dvc(own_copy, "exp", "show", "--csv").stdout
    assert "measure.iters" in shown


def test_dvc_checkout_does_not_make_snakemake_rerun(own_copy):
    report = own_copy / "results/smoke/report/pareto.png"
    report.unlink()
    dvc(own_copy, "checkout")
    assert report.is_file()
    snakemake(own_copy, "--touch", "--cores", "1")
    assert "Nothing to be done" in (lambda d: d.stdout + d.stderr)(snakemake(own_copy, "-n"))


def _changed_params(tmp_path: Path, section: str, key: str, value) -> Path:
    params = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
    params[section][key] = value
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_search_param_reruns_search_and_downstream_only(workdir, tmp_path):
    changed = _changed_params(tmp_path, "search", "generations", 3)
    jobs = planned_jobs(snakemake(workdir, "-n", configfile=changed).stdout)
    assert jobs.get("search") == 2
    assert {"train_supernet", "train_elastic", "data_prepare", "profile"}.isdisjoint(jobs)
    assert {"transform", "measure", "report"} <= set(jobs)


def test_train_param_reruns_training_and_downstream(workdir, tmp_path):
    params = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
    params["train"]["elastic"]["lr"] = 0.03
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    jobs = planned_jobs(snakemake(workdir, "-n", configfile=path).stdout)
    assert "train_elastic" in jobs and "search" in jobs and "report" in jobs
    assert {"train_supernet", "data_prepare", "data_synth", "profile"}.isdisjoint(jobs)


def test_stage_runs_are_nested_under_pipeline_runs(workdir):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/results/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["dwnas-smoke"], output_format="pandas")
    pipelines = runs[runs["tags.dwnas.stage"] == "pipeline"]
    assert len(pipelines) >= 1
    stages = runs[runs["tags.dwnas.stage"] != "pipeline"]
    assert set(stages["tags.mlflow.parentRunId"]) <= set(pipelines["run_id"])
    assert {"data_prepare", "train_supernet", "train_elastic", "search_double-win", "transform",
            "measure", "report"} <= set(stages["tags.dwnas.stage"])
    measure = stages[stages["tags.dwnas.stage"] == "measure"]
    assert set(measure["tags.dwnas.runtime"]) == set(SMOKE["measure"]["runtimes"])
    assert stages["tags.dwnas.git_commit"].notna().all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_serves_the_runs(workdir):
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/results/mlflow.db",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=dwnas-smoke",
                                            timeout=5) as resp:
                    experiment = json.load(resp)["experiment"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        body = json.dumps({"experiment_ids": [experiment["experiment_id"]],
                           "filter": "tags.`dwnas.stage` = 'measure'", "max_results": 1000}).encode()
        request = urllib.request.Request(f"{base}/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            found = json.load(resp)["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"]["tags"]} for run in found]
        served = {(t["dwnas.method"], t["dwnas.budget"], t["dwnas.runtime"]) for t in tags}
        files = {(p.parts[-4], p.parts[-3], p.stem)
                 for p in (workdir / "results/smoke/measure").rglob("*.json")}
        assert served == files  # every measurement is a run the server returns (re-runs add more)
        metrics = {m["key"] for m in found[0]["data"]["metrics"]}
        assert "latency_ms.shallow" in metrics and "speedup" in metrics
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _snakemake_elsewhere(workdir: Path, *args: str):
    """The repo's Snakefile run in another working directory (no results/ in the repo)."""
    return run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
               workdir, check=False, timeout=300)


def test_bad_params_fail_before_any_rule(tmp_path):
    bad = _changed_params(tmp_path, "train", "supernet", {"lr": 0})
    done = _snakemake_elsewhere(tmp_path, "-n", "--cores", "1", "--configfile", str(bad))
    assert done.returncode != 0
    assert "train.supernet.lr: must be > 0" in done.stdout + done.stderr
    imagenet = _snakemake_elsewhere(tmp_path, "-n", "--cores", "1", "--configfile",
                                    str(REPO / "params/imagenet100.yaml"))
    assert imagenet.returncode != 0
    assert "data.root: /data/imagenet does not exist" in imagenet.stdout + imagenet.stderr
    missing = _snakemake_elsewhere(tmp_path, "-n", "--cores", "1", "--configfile", "params/nope.yaml")
    assert missing.returncode != 0 and "nope.yaml" in missing.stdout + missing.stderr
    assert not (tmp_path / "results").exists()


def test_slurm_profile_dry_run(tmp_path):
    done = _snakemake_elsewhere(tmp_path, "-n", "--profile", str(REPO / "profiles/slurm"),
                                "--configfile", str(REPO / "params/smoke.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = planned_jobs(done.stdout)
    assert jobs["train_supernet"] == 1 and jobs["measure"] >= 8
