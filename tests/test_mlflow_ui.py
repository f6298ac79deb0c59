"""The MLflow store as a researcher meets it: a real ``mlflow server`` on 127.0.0.1 (REST API) and
its web UI in a real headless Chromium, over a store that real stage runs produced.

The browser check needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
without them it is skipped, unless ``DWNAS_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow  # an MLflow server (and a browser): ~30-60 s

TAGS = ["--tag", "method=double-win", "--tag", "budget=60pct", "--tag", "device=host",
        "--tag", "runtime=onnxruntime"]
SYNTH_NAME = "data synth double-win 60pct host onnxruntime"
PREPARE_NAME = "data prepare double-win 60pct host onnxruntime"

PIPELINE = """
import json, os, sys
from pathlib import Path
from dwnas import track
from dwnas.cli import main

os.environ["DWNAS_EXPERIMENT"] = "dwnas-demo"  # as the Snakefile sets them
parent = track.start_pipeline_run("dwnas-demo", {"name": "demo", "seed": 0}, "params/demo.yaml")
os.environ["DWNAS_PARENT_RUN_ID"] = parent
tags = json.loads(sys.argv[1])
R = "results/demo"
assert main([*tags, "data", "synth", "--out", f"{R}/data/synth", "--classes", "2",
             "--train-per-class", "6", "--val-per-class", "2", "--image-size", "24",
             "--workers", "1"]) == 0
assert main([*tags, "data", "prepare", "--root", f"{R}/data/synth", "--subset", "all",
             "--out", f"{R}/data/prepared", "--workers", "1"]) == 0
report = Path(R, "report")
report.mkdir(parents=True)
(report / "summary.json").write_text(json.dumps({"rows": 1, "best_speedup": 1.8}))
(report / "main_table.csv").write_text(
    "method,budget,device,runtime,top1,speedup\\ndouble-win,60pct,host,onnxruntime,0.61,1.8\\n")
(report / "main_table.md").write_text("| Method | Top-1 |\\n|---|---|\\n| double-win | 0.61 |\\n")
track.set_extra_tags([])  # the report rule gives no --tag
track.log_stage("report", {"out": str(report)}, {"rows": 1})  # the report stage's run
track.end_pipeline_run(parent, "FINISHED")
print(parent)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_env() -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DWNAS_TRACKING": "1",
           "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default: sqlite:///results/mlflow.db in the project
    for name in ("DWNAS_EXPERIMENT", "DWNAS_PARENT_RUN_ID", "DWNAS_PARAMS_HASH"):
        env.pop(name, None)
    return env


def get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def post(url: str, body: dict, timeout: float = 30) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.load(resp)


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(url, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A project folder whose results/mlflow.db holds a pipeline parent run and two real stage
    runs (data synth, data prepare) nested under it."""
    root = tmp_path_factory.mktemp("project")
    done = subprocess.run([sys.executable, "-c", PIPELINE, json.dumps(TAGS)], cwd=root,
                          env=project_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return {"root": root, "parent": done.stdout.strip().splitlines()[-1]}


@pytest.fixture(scope="module")
def server(project) -> str:
    """``mlflow server`` on 127.0.0.1 over the project's store, started in the project folder
    (the artifact locations are relative to it, as when a user runs ``mlflow ui`` there)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", "sqlite:///results/mlflow.db",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=project["root"], env=project_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", proc)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def search(base: str, experiment_id: str) -> list[dict]:
    found = post(f"{base}/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment_id], "max_results": 100})["runs"]
    for run in found:
        run["tags"] = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        run["metrics"] = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
        run["params"] = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    return found


def experiment(base: str) -> dict:
    query = urllib.parse.urlencode({"experiment_name": "dwnas-demo"})
    return json.loads(get(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}"))["experiment"]


def test_rest_api_serves_named_nested_runs_with_metrics_and_artifacts(server, project):
    exp = experiment(server)
    assert exp["artifact_location"] == f"results/mlartifacts/{exp['experiment_id']}"
    runs = {run["info"]["run_name"]: run for run in search(server, exp["experiment_id"])}
    parent = next(run for run in runs.values() if run["info"]["run_id"] == project["parent"])
    assert parent["info"]["run_name"].startswith("demo.yaml 20")
    assert parent["info"]["status"] == "FINISHED"
    assert parent["tags"]["dwnas.stage"] == "pipeline"
    assert parent["params"]["name"] == "demo"
    assert parent["metrics"]["best_speedup"] == 1.8
    assert parent["metrics"]["double-win.60pct.host.onnxruntime.top1"] == 0.61
    assert set(runs) == {parent["info"]["run_name"], SYNTH_NAME, PREPARE_NAME, "report"}
    for name, stage in ((SYNTH_NAME, "data_synth"), (PREPARE_NAME, "data_prepare")):
        child = runs[name]
        assert child["tags"]["mlflow.parentRunId"] == project["parent"]
        assert child["tags"]["dwnas.stage"] == stage
        assert child["info"]["status"] == "FINISHED"
        assert child["info"]["end_time"] > child["info"]["start_time"]
    assert runs[SYNTH_NAME]["metrics"]["images"] == 16.0
    assert runs[PREPARE_NAME]["metrics"]["counts.train"] == 12.0

    query = urllib.parse.urlencode({"run_id": project["parent"], "path": "report"})
    listed = json.loads(get(f"{server}/api/2.0/mlflow/artifacts/list?{query}"))["files"]
    assert {f["path"] for f in listed} == {"report/summary.json", "report/main_table.csv",
                                           "report/main_table.md"}
    query = urllib.parse.urlencode({"run_uuid": project["parent"],
                                    "path": "report/summary.json"})
    served = json.loads(get(f"{server}/get-artifact?{query}"))
    assert served == {"rows": 1, "best_speedup": 1.8}
    query = urllib.parse.urlencode({"run_id": runs[SYNTH_NAME]["info"]["run_id"]})
    listed = json.loads(get(f"{server}/api/2.0/mlflow/artifacts/list?{query}"))["files"]
    assert [f["path"] for f in listed] == ["synth.json"]


# -- the web UI in a headless Chromium, driven through chromedriver's W3C WebDriver API ------------
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-dev-shm-usage", "--window-size=1600,1000"]


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Chromium and chromedriver not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("DWNAS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


class Browser:
    """A minimal WebDriver client: open a page, read its rendered text."""

    def __init__(self, driver_url: str, chromium: str):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": CHROME_ARGS}}}}
        self.url = driver_url
        self.session = post(f"{driver_url}/session", caps, timeout=120)["value"]["sessionId"]

    def open(self, url: str) -> None:
        post(f"{self.url}/session/{self.session}/url", {"url": url}, timeout=120)

    def text(self) -> str:
        return post(f"{self.url}/session/{self.session}/execute/sync",
                    {"script": "return document.body ? document.body.innerText : '';",
                     "args": []})["value"]

    def wait_for_text(self, *needles: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{missing} not in the page; it shows:\n{text[:3000]}")

    def close(self) -> None:
        request = urllib.request.Request(f"{self.url}/session/{self.session}", method="DELETE")
        with urllib.request.urlopen(request, timeout=30):
            pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = browser_binaries()
    port = free_port()
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/status", proc, timeout=60)
        session = Browser(url, chromium)
        try:
            yield session
        finally:
            session.close()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_the_ui_in_a_headless_browser_shows_the_named_runs(server, project, browser):
    exp = experiment(server)
    runs = {run["info"]["run_name"]: run["info"]["run_id"]
            for run in search(server, exp["experiment_id"])}
    parent_name = next(name for name, rid in runs.items() if rid == project["parent"])
    browser.open(f"{server}/#/experiments/{exp['experiment_id']}/runs")
    browser.wait_for_text("dwnas-demo", parent_name, "4 matching runs")
    # the parent's page: its name and the report's headline metric
    browser.open(f"{server}/#/experiments/{exp['experiment_id']}/runs/{project['parent']}")
    browser.wait_for_text(parent_name, "best_speedup")
    # a stage run's page: named by what it ran, under its named parent
    browser.open(f"{server}/#/experiments/{exp['experiment_id']}/runs/{runs[SYNTH_NAME]}")
    text = browser.wait_for_text(SYNTH_NAME, "Parent run", "images")
    assert text.index(parent_name) > text.index("Parent run")


MINI_SNAKEFILE = """
import os
from dwnas import track

onstart:
    parent = track.start_pipeline_run("dwnas-mini", {"name": "mini"}, "params/mini.yaml")
    if parent:
        os.environ["DWNAS_PARENT_RUN_ID"] = parent

onsuccess:
    track.end_pipeline_run(os.environ.get("DWNAS_PARENT_RUN_ID"), "FINISHED")

onerror:
    track.end_pipeline_run(os.environ.get("DWNAS_PARENT_RUN_ID"), "FAILED")

rule all:
    input: "done.txt"

rule make:
    output: "done.txt"
    shell: "dwnas data synth --out synth --classes 2 --train-per-class 2 --val-per-class 1 --image-size 16 --workers 1 && touch {output}"
"""


def test_snakemake_touch_leaves_no_empty_parent_run(tmp_path):
    """The Snakefile's hooks under a real Snakemake: a run keeps its parent with the stage under
    it; `snakemake --touch` (onstart and onsuccess run, no job does) keeps no parent run."""
    import mlflow

    (tmp_path / "Snakefile").write_text(MINI_SNAKEFILE)
    env = {**project_env(), "DWNAS_EXPERIMENT": "dwnas-mini"}
    for args in ([], ["--touch"]):
        done = subprocess.run([str(BIN / "snakemake"), "--cores", "1", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    c = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/results/mlflow.db")
    exp = c.get_experiment_by_name("dwnas-mini")
    runs = c.search_runs([exp.experiment_id], run_view_type=3)  # deleted ones too
    parents = [r for r in runs if r.data.tags.get("dwnas.stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    [stage] = [r for r in runs if r not in parents]
    assert stage.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert stage.info.run_name == "data synth"


def test_killed_snakemake_then_rerun_leaves_every_run_ended(tmp_path):
    """kill -9 of Snakemake and its job mid-stage, then a rerun: the killed parent and stage runs
    end KILLED, the rerun's FINISHED, nothing stays RUNNING."""
    import signal
    import sqlite3

    import mlflow

    (tmp_path / "Snakefile").write_text(MINI_SNAKEFILE.replace("--train-per-class 2 ",
                                                               "--train-per-class 30000 "))
    env = {**project_env(), "DWNAS_EXPERIMENT": "dwnas-mini"}
    cmd = [str(BIN / "snakemake"), "--cores", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "results" / "mlflow.db"

    def stage_running() -> bool:
        if not db.exists():
            return False
        with sqlite3.connect(db, timeout=30) as con:
            try:
                return bool(con.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING' "
                                        "AND name = 'data synth'").fetchone()[0])
            except sqlite3.OperationalError:  # tables not there yet
                return False

    deadline = time.monotonic() + 300
    while not stage_running():
        assert time.monotonic() < deadline and proc.poll() is None, "the stage never started"
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for args in (["--unlock"], ["--rerun-incomplete"]):
        done = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    c = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = c.get_experiment_by_name("dwnas-mini")
    runs = c.search_runs([exp.experiment_id])
    statuses = sorted((r.data.tags["dwnas.stage"], r.info.status) for r in runs)
    assert statuses == [("data_synth", "FINISHED"), ("data_synth", "KILLED"),
                        ("pipeline", "FINISHED"), ("pipeline", "KILLED")]
    assert not list(tmp_path.glob(".synth.*.tmp"))
