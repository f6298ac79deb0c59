"""MLflow tracking and leftovers (issues 13 and 14): killed runs ended, resumed curves complete,
a concurrent first use of a store, names a researcher can read, nothing a kill leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_args import supernet_args

from dwnas import track
from dwnas.cli import main

REPO = Path(__file__).resolve().parents[1]


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str = "dwnas") -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def sub_env(uri: str, **extra: str) -> dict:
    env = {**os.environ, "DWNAS_TRACKING": "1", "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": str(REPO), **extra}
    return env


def synth_args(out: Path, per_class: int = 4, workers: int = 1) -> list[str]:
    return ["data", "synth", "--out", str(out), "--classes", "2", "--train-per-class",
            str(per_class), "--val-per-class", "2", "--image-size", "24", "--workers",
            str(workers)]


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running_runs(db: Path) -> int:
    """RUNNING runs in a SQLite store, read without MLflow (cheap enough to poll)."""
    import sqlite3

    with sqlite3.connect(db, timeout=30) as con:
        return con.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(stat.parent.name))
    return found


# -- 1 and 4: a killed stage's run and temporaries are dealt with at the next start -----------------
def test_killed_stage_run_ends_killed_and_its_temporary_goes_at_next_start(tmp_path, tracking_on,
                                                                          capsys):
    out = tmp_path / "synth"
    track.connect()  # the store exists before the stage starts (as a pipeline's parent makes it)
    proc = subprocess.Popen([sys.executable, "-m", "dwnas", *synth_args(out, per_class=20000)],
                            env=sub_env(tracking_on), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: running_runs(tmp_path / "mlflow.db"), what="the stage's RUNNING run")
    temporary = wait_for(lambda: list(tmp_path.glob(".synth.*.tmp")), what="synth's temporary")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert temporary[0].exists() and not out.exists()
    [killed] = all_runs(tracking_on)
    assert killed.info.status == "RUNNING"
    assert killed.data.tags["dwnas.pid"] == str(proc.pid)

    assert main(synth_args(out)) == 0  # the stage's next start
    assert not temporary[0].exists(), "the killed run's temporary folder is still there"
    assert "removed what a killed run left" in capsys.readouterr().err
    runs = {r.info.run_id: r for r in all_runs(tracking_on)}
    assert runs[killed.info.run_id].info.status == "KILLED"
    assert str(proc.pid) in runs[killed.info.run_id].data.tags["dwnas.ended_by"]
    [fresh] = [r for r in runs.values() if r.info.run_id != killed.info.run_id]
    assert fresh.info.status == "FINISHED"


def test_a_live_writers_run_and_temporary_are_left_alone(tmp_path, tracking_on):
    """Only runs and temporaries of processes that are gone count as killed."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        from dwnas.procs import proc_start

        tag = f"p{live.pid}-{proc_start(live.pid)}"
        busy = tmp_path / f".synth.abc123.{tag}.tmp"
        busy.mkdir()
        c = client(tracking_on)
        track.connect()
        exp = track.experiment_id("dwnas")
        run = c.create_run(exp, tags={**track.process_tags(), "dwnas.pid": str(live.pid),
                                      "dwnas.pid_start": proc_start(live.pid)})
        # a run of a process in another container (same host name, other pid namespace)
        foreign = c.create_run(exp, tags={**track.process_tags(), "dwnas.pid": "999999",
                                          "dwnas.pid_ns": "pid:[1]"})
        assert main(synth_args(tmp_path / "synth")) == 0
        assert busy.is_dir()
        assert c.get_run(run.info.run_id).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait()
    assert main(synth_args(tmp_path / "synth")) == 0
    assert not busy.exists()
    assert c.get_run(run.info.run_id).info.status == "KILLED"
    assert c.get_run(foreign.info.run_id).info.status == "RUNNING"


def test_killed_data_prepare_leaves_no_workers_and_its_folder_goes_at_next_start(tmp_path,
                                                                                 capsys):
    raw = tmp_path / "raw"
    assert main(synth_args(raw, per_class=4000, workers=2)) == 0  # packing takes ~2 s
    out = tmp_path / "prepared"
    cmd = [sys.executable, "-m", "dwnas", "data", "prepare", "--root", str(raw), "--subset", "all",
           "--out", str(out), "--workers", "2", "--pack-size", "64"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = wait_for(  # mid-pack: the prepared folder's temporary copy holds the packed images
        lambda: children(proc.pid) if len(children(proc.pid)) >= 2
        and list(tmp_path.glob(".prepared.*.tmp")) else None, timeout=120,
        what="the packing pool's workers")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    from dwnas.procs import process_alive

    wait_for(lambda: not any(process_alive(pid) for pid in workers), timeout=10,
             what="the workers to die with their parent")
    [temporary] = list(tmp_path.glob(".prepared.*.tmp"))
    # the next start removes it, even one that then fails on its input
    assert main(["data", "prepare", "--root", str(tmp_path / "missing"), "--subset", "all",
                 "--out", str(out)]) == 2
    assert not temporary.exists()
    assert f"removed what a killed run left: {temporary}" in capsys.readouterr().err


def test_a_kill_during_a_state_save_leaves_no_temporary(tmp_path):
    script = ("import sys, torch\nfrom dwnas.io import torch_save\nbig = torch.zeros(2**25)\n"
              "print('saving', flush=True)\n"
              "while True:\n    torch_save({'w': big}, sys.argv[1])\n")
    target = tmp_path / "elastic.state.pt"
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    assert proc.stdout.readline().strip() == "saving"
    wait_for(target.exists, what="a first save")
    time.sleep(0.7)  # saves of 256 MiB: killed in the middle of one, with high probability
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [p.name for p in tmp_path.iterdir()] == ["elastic.state.pt"]
    assert torch.load(target, weights_only=True)["w"].numel() == 2**25  # the last complete save


# -- 2: a resumed training's run carries the whole curve --------------------------------------------
class Killed(Exception):
    pass


def _loss_history(uri: str) -> list[tuple[int, float]]:
    [run] = [r for r in all_runs(uri) if r.info.status == "FINISHED"
             and r.data.tags.get("dwnas.stage") == "train_supernet"]
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run.info.run_id, "loss"))


def test_resumed_training_run_carries_the_epoch_history(prepared, tmp_path, tracking_on,
                                                        monkeypatch):
    from dwnas.train.engine import Trainer

    clean = tmp_path / "clean"
    monkeypatch.setenv("DWNAS_TRACKING", "0")
    assert main(supernet_args(prepared, clean, epochs=2, checkpoint_every=4)) == 0
    expected = [(h["epoch"], h["loss"])
                for h in json.loads((clean / "summary.json").read_text())["history"]]

    killed = tmp_path / "killed"
    original = Trainer.__init__

    def dies_in_epoch_two(self, job, on_epoch=None):
        def on(metrics, step):
            if metrics["epoch"] == 2:
                raise Killed
            (on_epoch or (lambda m, s: None))(metrics, step)
        original(self, job, on)

    monkeypatch.setenv("DWNAS_TRACKING", "1")
    monkeypatch.setattr(Trainer, "__init__", dies_in_epoch_two)
    with pytest.raises(Killed):
        main(supernet_args(prepared, killed, epochs=2, checkpoint_every=4))
    monkeypatch.setattr(Trainer, "__init__", original)
    state = torch.load(killed / "supernet.state.pt", weights_only=True)
    assert len(state["history"]) == 1 and state["step"] % 6 != 0  # resumes inside epoch 2

    assert main(supernet_args(prepared, killed, epochs=2, checkpoint_every=4)) == 0
    assert _loss_history(tracking_on) == expected  # both epochs, the second over all its batches
    resumed = json.loads((killed / "summary.json").read_text())["history"]
    assert [(h["epoch"], h["loss"]) for h in resumed] == expected


def test_kill_during_the_epoch_end_evaluation_loses_no_epoch(prepared, tmp_path, monkeypatch):
    """A state saved at an epoch's last step (checkpoint_every divides the epoch) would resume
    past an epoch whose figures were never recorded."""
    from dwnas.train.engine import Trainer

    clean = tmp_path / "clean"
    assert main(supernet_args(prepared, clean, epochs=2, checkpoint_every=6)) == 0
    expected = json.loads((clean / "summary.json").read_text())["history"]
    original = Trainer.__init__

    def dies_at_first_evaluation(self, job, on_epoch=None):
        def on(metrics, step):
            raise Killed
        original(self, job, on)

    killed = tmp_path / "killed"
    monkeypatch.setattr(Trainer, "__init__", dies_at_first_evaluation)
    with pytest.raises(Killed):
        main(supernet_args(prepared, killed, epochs=2, checkpoint_every=6))
    monkeypatch.setattr(Trainer, "__init__", original)
    assert main(supernet_args(prepared, killed, epochs=2, checkpoint_every=6)) == 0
    history = json.loads((killed / "summary.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["loss"] for h in history] == [h["loss"] for h in expected]


# -- 3: concurrency and failures --------------------------------------------------------------------
WRITER = """
import sys
from dwnas import track
for i in range(10):
    track.log_stage(f"writer{sys.argv[1]}_{i}", {"i": i}, {"m": float(i)})
"""


@pytest.mark.slow  # six processes importing MLflow on a fresh store: ~45 s on 2 cores
def test_six_concurrent_writers_on_a_fresh_store_store_every_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(w)], env=sub_env(uri),
                              stderr=subprocess.PIPE, text=True) for w in range(6)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert not [e for e in errors if "warning:" in e or "Traceback" in e]
    runs = all_runs(uri)
    assert len(runs) == 60
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow  # three processes importing MLflow on a fresh store: ~30 s on 2 cores
def test_three_concurrent_stages_on_a_fresh_store_all_finish(tmp_path):
    """The issue's case: three `dwnas data synth` at once on a new store failed 2 of 3 (rc 1,
    after writing their outputs): each now exits 0 with its output and a FINISHED run."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-m", "dwnas", *synth_args(tmp_path / f"s{i}")],
                              env=sub_env(uri), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(3)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not [e for e in errors if "warning:" in e or "Traceback" in e], errors
    assert all((tmp_path / f"s{i}" / "synth.json").is_file() for i in range(3))
    runs = all_runs(uri)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3


def test_a_tracking_failure_never_fails_a_finished_stage(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(os.urandom(4096))  # not a database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{broken}")
    monkeypatch.setenv("DWNAS_TRACKING", "1")
    out = tmp_path / "synth"
    assert main(synth_args(out)) == 0
    assert (out / "synth.json").is_file()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(broken) in warnings[0]
    assert "Traceback" not in err


# -- 5: runs a researcher can read -----------------------------------------------------------------
def test_stage_runs_are_named_by_what_they_ran(tmp_path, tracking_on):
    assert main(["--tag", "method=double-win", "--tag", "budget=60pct", "--tag", "device=host",
                 "--tag", "runtime=onnxruntime", *synth_args(tmp_path / "a")]) == 0
    track.set_extra_tags(["method=deep-only", "budget=90pct", "device=host",
                          "runtime=onnxruntime"])
    try:
        track.log_stage("measure", {"resolution": 32}, {"speedup": 1.5})
        track.log_stage("search_deep-only", {}, {})
    finally:
        track.set_extra_tags([])
    names = {r.info.run_name for r in all_runs(tracking_on)}
    assert names == {"data synth double-win 60pct host onnxruntime",
                     "measure deep-only 90pct host onnxruntime",
                     "search deep-only 90pct host onnxruntime"}


def test_a_stage_runs_duration_covers_its_work(tmp_path, tracking_on, monkeypatch):
    """The work is made to last at least 0.3 s, however fast the machine: a run opened only
    when the stage logs its results would last far less."""
    from dwnas.data import synth

    synthesize = synth.synthesize

    def slow_synthesize(*args, **kwargs):
        time.sleep(0.3)
        return synthesize(*args, **kwargs)

    monkeypatch.setattr(synth, "synthesize", slow_synthesize)
    assert main(synth_args(tmp_path / "s")) == 0
    [run] = all_runs(tracking_on)
    work = run.data.metrics["seconds"]
    assert work >= 0.3
    assert (run.info.end_time - run.info.start_time) / 1000 >= work


def test_artifacts_live_under_the_stores_folder_by_a_relative_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db")
    monkeypatch.setenv("DWNAS_TRACKING", "1")
    assert main(synth_args(Path("results/x/synth"))) == 0
    uri = "sqlite:///results/mlflow.db"
    exp = client(uri).get_experiment_by_name("dwnas")
    assert exp.artifact_location == f"results/mlartifacts/{exp.experiment_id}"
    assert client(uri).get_experiment("0").artifact_location == "results/mlartifacts/0"
    [run] = all_runs(uri)
    assert run.info.artifact_uri.startswith("results/mlartifacts/")
    assert (tmp_path / run.info.artifact_uri / "synth.json").is_file()
    assert not (tmp_path / "mlruns").exists()
    # the checkout moves: the store still finds its artifacts
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    os.rename(tmp_path, moved)
    try:
        monkeypatch.chdir(moved)
        assert [a.path for a in client(uri).list_artifacts(run.info.run_id)] == ["synth.json"]
    finally:
        monkeypatch.chdir(REPO)
        os.rename(moved, tmp_path)


def fake_report(folder: Path) -> Path:
    """A report folder as `dwnas report` writes it (summary, main table, a figure)."""
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(
        {"rows": 2, "best_speedup": 1.8, "max_top1_gap_files": 0.001, "files": ["x"],
         "lut_fidelity_pipeline": {"kendall_tau": 0.9}}))
    (folder / "main_table.csv").write_text(
        "method,budget,device,runtime,top1,speedup,latency_shallow_ms,latency_deep_ms\n"
        "double-win,60pct,host,onnxruntime,0.61,1.8,1.2,2.1\n"
        "mobilenetv2,w1.0,host,onnxruntime,0.55,,3.0,3.0\n")
    (folder / "main_table.md").write_text("| Method |\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(folder / "pareto.png")
    plt.close(fig)
    return folder


def test_parent_run_named_by_params_file_and_time_carries_the_report(tmp_path, tracking_on,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DWNAS_EXPERIMENT", "dwnas-demo")
    parent = track.start_pipeline_run("dwnas-demo", {"name": "demo", "seed": 0},
                                      str(tmp_path / "params" / "demo.yaml"))
    monkeypatch.setenv("DWNAS_PARENT_RUN_ID", parent)
    assert main(synth_args(tmp_path / "results/demo/data/synth")) == 0
    fake_report(tmp_path / "results/demo/report")
    track.log_stage("report", {}, {"rows": 2})  # the report stage ran under this parent
    track.end_pipeline_run(parent, "FINISHED")
    c = client(tracking_on)
    run = c.get_run(parent)
    assert run.info.run_name.startswith("demo.yaml 20")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_speedup"] == 1.8
    assert run.data.metrics["double-win.60pct.host.onnxruntime.top1"] == 0.61
    assert run.data.metrics["lut_fidelity_pipeline.kendall_tau"] == 0.9
    assert {a.path for a in c.list_artifacts(parent, "report")} == {
        "report/summary.json", "report/main_table.csv", "report/main_table.md",
        "report/pareto.png"}
    children = [r for r in all_runs(tracking_on, "dwnas-demo") if r.info.run_id != parent]
    assert sorted(r.info.run_name for r in children) == ["data synth", "report"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent}


def test_a_report_from_an_earlier_run_is_not_attached(tmp_path, tracking_on, monkeypatch):
    """Only the invocation whose report stage ran gets the report (a later invocation that only
    re-ran, say, a data stage does not inherit the old figures)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DWNAS_EXPERIMENT", "dwnas-demo")
    fake_report(tmp_path / "results/demo/report")
    parent = track.start_pipeline_run("dwnas-demo", {"name": "demo"}, "params/demo.yaml")
    monkeypatch.setenv("DWNAS_PARENT_RUN_ID", parent)
    assert main(synth_args(tmp_path / "results/demo/data/synth")) == 0
    track.end_pipeline_run(parent, "FINISHED")
    run = client(tracking_on).get_run(parent)
    assert run.info.status == "FINISHED"
    assert "best_speedup" not in run.data.metrics
    assert client(tracking_on).list_artifacts(parent) == []


def test_a_pipeline_run_no_stage_ran_under_is_not_kept(tmp_path, tracking_on):
    """`snakemake --touch` (and a run with nothing to do) leaves no empty parent run."""
    parent = track.start_pipeline_run("dwnas-touch", {"name": "touch"}, "params/touch.yaml")
    assert parent
    track.end_pipeline_run(parent, "FINISHED")
    assert all_runs(tracking_on, "dwnas-touch") == []


def test_a_killed_pipelines_parent_run_ends_killed_at_the_next_start(tmp_path, tracking_on):
    code = ("import os, signal\nfrom dwnas import track\n"
            "print(track.start_pipeline_run('dwnas-k', {'name': 'k'}, 'params/k.yaml'), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], env=sub_env(tracking_on),
                          capture_output=True, text=True, timeout=300)
    parent = done.stdout.strip().splitlines()[-1]
    assert client(tracking_on).get_run(parent).info.status == "RUNNING"
    second = track.start_pipeline_run("dwnas-k", {"name": "k"}, "params/k.yaml")
    assert client(tracking_on).get_run(parent).info.status == "KILLED"
    assert client(tracking_on).get_run(second).info.status == "RUNNING"


def test_report_training_curves_come_from_files_without_a_store(tmp_path, monkeypatch):
    from dwnas.report.run import _training_histories, training_summaries

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/none/mlflow.db")
    paths = {}
    for stage, epochs in (("supernet", 3), ("elastic", 2)):
        (tmp_path / stage).mkdir()
        history = [{"epoch": e, "loss": 1.0 / e, "largest_top1": 0.1 * e, "smallest_top1": 0.05 * e}
                   for e in range(1, epochs + 1)]
        (tmp_path / stage / "summary.json").write_text(json.dumps({"stage": stage,
                                                                   "history": history}))
        paths[stage] = tmp_path / stage / f"{stage}.pt"
    sweeps = [{"checkpoint": str(paths["supernet"])}, {"checkpoint": str(paths["elastic"])}]
    summaries = training_summaries([], sweeps)
    assert set(summaries) == {"supernet", "elastic"}
    histories = _training_histories(summaries, "dwnas-nowhere")
    loss = histories["supernet"][histories["supernet"]["metric"] == "loss"]
    assert list(loss["step"]) == [1, 2, 3]
    assert len(histories["elastic"]) == 6
    assert not (tmp_path / "none").exists(), "the report opened an MLflow store"
    # and with no summary files, a missing store is no failure either (and is not created)
    assert _training_histories({}, "dwnas-nowhere") == {}
    assert not (tmp_path / "none").exists()
    # nor a store without the experiment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    track.connect()
    assert _training_histories({}, "dwnas-nowhere") == {}


def test_report_library_function_refuses_no_rows_and_writes_nothing(tmp_path):
    """Issue 16: the stage is ``dwnas.report.run.run``; the command only parses flags."""
    from dwnas.errors import DwnasError
    from dwnas.report.run import run

    with pytest.raises(DwnasError, match="nothing to report"):
        run(measured=[], out=tmp_path / "report")
    assert not (tmp_path / "report").exists()


# -- the tests themselves never reach the user's store ------------------------------------------------
@pytest.fixture(scope="module")
def module_tracking_view():
    """What a module-scoped fixture (set up before any function-scoped one) sees."""
    return track.enabled(), track.tracking_uri()


def test_module_fixtures_are_isolated_from_the_users_store(module_tracking_view):
    on, uri = module_tracking_view
    assert not on
    assert str(REPO / "results") not in uri and uri != track.DEFAULT_URI


def test_dwnas_run_opens_no_run_of_its_own(tracking_on):
    """`make run` (dwnas run) is the orchestrator: the Snakefile's onstart opens the parent run."""
    import argparse

    assert track.begin_command(argparse.Namespace(command="run"), ["run"]) is None
    track.end_command("FINISHED")
    assert client(tracking_on).search_experiments(filter_string="name = 'dwnas'") == []


def test_a_running_stage_is_already_named_by_what_it_runs(tracking_on):
    """While `dwnas compare` works, its run is already the `measure ...` run it will end as."""
    import argparse

    track.set_extra_tags(["method=double-win", "budget=60pct", "device=host",
                          "runtime=onnxruntime"])
    try:
        run = track.begin_command(argparse.Namespace(command="compare"), ["compare"])
        live = client(tracking_on).get_run(run.run_id)
        assert live.info.status == "RUNNING"
        assert live.info.run_name == "measure double-win 60pct host onnxruntime"
        assert live.data.tags["dwnas.stage"] == "measure"
        assert live.data.tags["dwnas.pid"] == str(os.getpid())
    finally:
        track.end_command("FINISHED")
        track.set_extra_tags([])
    assert client(tracking_on).get_run(run.run_id).info.status == "FINISHED"
