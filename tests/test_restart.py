"""`make run` killed mid-pipeline and restarted with `make run` alone; then what a user does with
the finished checkout: Snakemake's report, a moved copy, DVC status / push / pull / restore,
metrics and plots.

One fresh git project on params/smoke.yaml (dvc.yaml switched to smoke, as test_pipeline does),
run through the Makefile's own `run` target:

0. killed with SIGKILL to the whole `make` process group mid-way through the supernet's training
   (its resume state written, its checkpoint not), 1. restarted, killed with SIGKILL to snakemake
   alone while `train_elastic` runs (its jobs must not outlive it), 2. restarted, killed with
   SIGKILL to the whole `make` process group while the first `measure` job runs, 3. restarted to
   completion. Nothing that had finished may run again; the trained weights equal those of an
   uninterrupted run of the same training stages in a second copy; no temporary file is left and
   every MLflow run has ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dwnas.pipeline import live_snakemakes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VENV = BIN.parent
pytestmark = pytest.mark.slow


def env() -> dict:
    out = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    out.pop("MLFLOW_TRACKING_URI", None)  # the project's own store, results/mlflow.db
    out["DWNAS_TRACKING"] = "1"  # as a user runs it (the suite turns tracking off elsewhere)
    out.pop("MAKEFLAGS", None)
    return out


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 1200):
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd[:4]} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                             f"{done.stderr[-4000:]}")
    return done


def make_run() -> list[str]:
    """The README's `make run`, on smoke params, with the test's venv (never reinstalled)."""
    return ["make", "-o", str(VENV / ".installed-stamp"), "run", f"VENV={VENV}",
            "PARAMS=params/smoke.yaml", "CORES=2"]


def project_files(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file() and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    smoke = dest / "params/smoke.yaml"  # three epochs: a supernet training long enough to kill
    params = yaml.safe_load(smoke.read_text())
    params["train"]["supernet"]["epochs"] = 3
    smoke.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_yaml = dest / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("params/default.yaml", "params/smoke.yaml"))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"]):
        run(cmd, dest)
    return dest


def processes_in(project: Path) -> list[tuple[int, str]]:
    """Processes working in ``project`` (their cwd), this test's own left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() == project.resolve():
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                found.append((int(entry.name), cmd))
        except OSError:
            continue
    return found


def wait_for(predicate, timeout: float, what: str, proc=None, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate(timeout=60)
            raise AssertionError(f"make ended ({proc.returncode}) before {what}:\n{out[-3000:]}\n"
                                 f"{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def finished_outputs(results: Path) -> dict[str, int]:
    """Every output file present, with its mtime (logs, benchmarks, resume state left out)."""
    return {str(p.relative_to(results)): p.stat().st_mtime_ns for p in results.rglob("*")
            if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "benchmarks")
            and not any(part.startswith(".") for part in p.relative_to(results).parts)
            and ".state.pt" not in p.name}


def pending_outputs(project: Path) -> set[str]:
    """Outputs Snakemake will make again (its `--summary` plan "update pending"), relative to
    results/smoke: a job whose output was written but whose completion Snakemake had not yet
    recorded when it was killed is incomplete, and re-running it is correct."""
    done = run(["snakemake", "--summary", "--cores", "2", "--configfile", "params/smoke.yaml"],
               project)
    prefix = "results/smoke/"
    pending = set()
    for line in done.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 6 and fields[-1] == "update pending" and fields[0].startswith(prefix):
            pending.add(fields[0][len(prefix):])
    return pending


def finished_for_snakemake(project: Path, results: Path) -> dict[str, int]:
    """Present outputs that Snakemake counts as done, so a restart must leave them untouched."""
    pending = pending_outputs(project)
    return {path: mtime for path, mtime in finished_outputs(results).items()
            if path not in pending}


def weights_digest(path: Path) -> str:
    """SHA-256 over a checkpoint's tensors, names and bytes (its summary's timings left out)."""
    import hashlib

    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    tensors = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name]
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(value.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                          if value.numel() else b"")
    return digest.hexdigest()


# Training stages whose result depends on the seed alone; HURRICANE and DepthShrinker pick their
# networks by measured latency, so a second run may train other networks.
DETERMINISTIC_CHECKPOINTS = ("supernet/supernet.pt", "elastic/elastic.pt", "fixed/fixed.pt",
                             "baselines/mobilenetv2/w0.35_r32/weights.pt",
                             "baselines/odn/mbconv/weights.pt", "baselines/odn/resnet18/weights.pt")


def leftover_temporaries(results: Path) -> list[str]:
    return sorted(str(p.relative_to(results)) for p in results.rglob("*")
                  if ".tmp" in p.name or p.name.endswith(".state.pt"))


class Started:
    """`make run` in the background, its output going to files (a pipe nobody reads while the
    test waits would fill up and stall snakemake)."""

    def __init__(self, project: Path, n: int):
        self.out_path, self.err_path = (project.parent / f"make{n}.{k}" for k in ("out", "err"))
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(make_run(), cwd=project, env=env(), stdout=out,
                                         stderr=err, text=True, start_new_session=True)
        self.pid = self.proc.pid

    def poll(self):
        return self.proc.poll()

    def communicate(self, timeout: float):
        self.proc.wait(timeout=timeout)
        return self.out_path.read_text(), self.err_path.read_text()

    @property
    def returncode(self):
        return self.proc.returncode


def start(project: Path) -> Started:
    start.count = getattr(start, "count", 0) + 1
    return Started(project, start.count)


@pytest.fixture(scope="module")
def restarted(tmp_path_factory) -> dict:
    project = project_files(tmp_path_factory.mktemp("restart") / "project")
    results = project / "results/smoke"
    seen: dict = {"project": project}

    # 0. SIGKILL to the whole `make run` process group, mid-way through the supernet's training
    state = results / "supernet/supernet.state.pt"
    make = start(project)
    wait_for(state.exists, 900, "the supernet's resume state", make, every=0.005)
    os.killpg(make.pid, signal.SIGKILL)
    make.communicate(timeout=60)
    seen["supernet_finished_before_kill"] = (results / "supernet/supernet.pt").exists()
    wait_for(lambda: not processes_in(project), 15, "the killed run's processes to end")

    # 1. SIGKILL to snakemake alone, while train_elastic runs
    make = start(project)
    wait_for(lambda: (results / "logs/train_elastic.log").exists(), 900, "train_elastic", make)
    time.sleep(1.0)
    smk = live_snakemakes(project)
    assert len(smk) == 1, smk
    os.kill(smk[0], signal.SIGKILL)
    out, err = make.communicate(timeout=120)
    seen["first"] = (make.returncode, out, err)
    time.sleep(2.0)
    seen["left_after_first"] = processes_in(project)
    seen["locks_after_first"] = sorted(p.name for p in (project / ".snakemake/locks").iterdir())
    seen["done_after_first"] = finished_for_snakemake(project, results)

    # 2. restarted; SIGKILL to the whole `make run` process group while its first measure runs
    # (a baseline's measure may already have run before train_elastic: only a new log counts)
    def measure_logs() -> set:
        return set((results / "logs").glob("measure_*.log"))

    measured_before = measure_logs()
    make = start(project)
    wait_for(lambda: measure_logs() - measured_before, 1500, "a measure job", make)
    time.sleep(1.0)
    os.killpg(make.pid, signal.SIGKILL)
    out, err = make.communicate(timeout=60)
    seen["second"] = (make.returncode, out, err)
    deadline = time.monotonic() + 15
    while processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen["left_after_second"] = processes_in(project)
    seen["done_after_second"] = finished_for_snakemake(project, results)

    # 3. `make run` alone completes
    seen["third"] = run(make_run(), project, check=False, timeout=1800)
    seen["done_after_third"] = finished_outputs(results)
    return seen


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, restarted) -> Path:
    """The deterministic training stages run once, uninterrupted, in a second copy (after the
    restarted run, so the two never share the machine's cores)."""
    project = project_files(tmp_path_factory.mktemp("uninterrupted") / "project")
    targets = [f"results/smoke/{name}".replace("weights.pt", "transform.json")  # a rule's output
               for name in DETERMINISTIC_CHECKPOINTS]
    run([str(BIN / "dwnas"), "run", "--cores", "2", "--configfile", "params/smoke.yaml", "--",
         *targets], project, timeout=1800)
    return project / "results/smoke"


@pytest.mark.timeout(3600)
def test_killed_run_restarts_with_make_run_alone(restarted):
    rc, out, err = restarted["first"]
    assert rc != 0
    assert "snakemake was killed by signal 9" in err, err[-2000:]
    assert restarted["left_after_first"] == []  # its jobs did not outlive snakemake
    assert restarted["locks_after_first"]  # the kill left snakemake's lock behind

    rc, _, err = restarted["second"]
    assert rc == -signal.SIGKILL
    assert "removing the stale lock" in err  # left by the snakemake killed in step 1
    assert restarted["left_after_second"] == []  # snakemake and the jobs stopped with `make run`

    third = restarted["third"]
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "removing the stale lock" in third.stderr  # snakemake died with `make run` in step 2
    report = restarted["project"] / "results/smoke/report/summary.json"
    assert json.loads(report.read_text())["rows"] > 0
    after = restarted["done_after_third"]
    for done in (restarted["done_after_first"], restarted["done_after_second"]):
        rerun = sorted(path for path, mtime in done.items() if after.get(path) != mtime)
        assert rerun == [], f"finished outputs made again: {rerun[:10]}"
    # each kill left finished work behind (how much finished between the second and the third
    # kill depends on which ready job Snakemake starts first: it may be the measure that is killed)
    assert len(restarted["done_after_second"]) >= len(restarted["done_after_first"]) > 0


@pytest.mark.timeout(3600)
def test_killed_three_times_trains_the_weights_of_an_uninterrupted_run(restarted, uninterrupted):
    assert not restarted["supernet_finished_before_kill"], "the kill came after the training"
    results = restarted["project"] / "results/smoke"
    log = (results / "logs/train_supernet.log").read_text()
    assert "resumed from" in log, log[-2000:]  # the supernet went on from its state, not from 0
    for name in DETERMINISTIC_CHECKPOINTS:
        assert weights_digest(results / name) == weights_digest(uninterrupted / name), name


def test_no_temporary_file_is_left_and_every_mlflow_run_ended(restarted):
    results = restarted["project"] / "results/smoke"
    assert leftover_temporaries(results) == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{restarted['project'] / 'results/mlflow.db'}")
    experiment = client.get_experiment_by_name("dwnas-smoke")
    statuses: dict[str, int] = {}
    for run_ in client.search_runs([experiment.experiment_id], max_results=1000):
        statuses[run_.info.status] = statuses.get(run_.info.status, 0) + 1
    assert statuses.get("FINISHED", 0) > 0
    assert set(statuses) <= {"FINISHED", "KILLED", "FAILED"}, statuses
    assert statuses.get("KILLED", 0) >= 3  # a run of each killed stage, ended at the next start


def test_after_the_restart_nothing_is_left_to_do(restarted):
    project = restarted["project"]
    dry = run([str(BIN / "snakemake"), "-n", "--configfile", "params/smoke.yaml"], project)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert not any((project / ".snakemake/locks").iterdir())


def test_snakemake_report_and_dag_with_no_flag(restarted):
    project = restarted["project"]
    done = run([str(BIN / "snakemake"), "--configfile", "params/smoke.yaml", "--report",
                "report.html"], project, timeout=600)
    assert (project / "report.html").stat().st_size > 10_000, done.stderr[-2000:]
    dag = run([str(BIN / "snakemake"), "--configfile", "params/smoke.yaml", "--dag"], project)
    assert dag.stdout.lstrip().startswith("digraph")


def test_a_moved_checkout_reruns_nothing(restarted, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(restarted["project"], moved, symlinks=True)
    dry = run([str(BIN / "snakemake"), "-n", "--configfile", "params/smoke.yaml"], moved)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_dvc_agrees_with_snakemake(restarted):
    project = restarted["project"]
    assert "recording this run's outputs in dvc.lock" in restarted["third"].stderr
    cache = project / "dwnas/search/__pycache__"  # what importing the code leaves (not in git)
    cache.mkdir(exist_ok=True)
    (cache / "latency.cpython-311.pyc").write_bytes(b"byte code")
    status = run([str(BIN / "dvc"), "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    dry = run([str(BIN / "dvc"), "repro", "--dry"], project)
    assert "didn't change, skipping" in dry.stdout and "Running stage" not in dry.stdout


def test_dvc_push_pull_restore_metrics_and_plots(restarted, tmp_path):
    project = restarted["project"]
    dvc = str(BIN / "dvc")
    pushed = run([dvc, "push"], project)
    assert "files pushed" in pushed.stdout or "file pushed" in pushed.stdout, pushed.stdout
    restore = run(["make", "-o", str(VENV / ".installed-stamp"), "restore", f"VENV={VENV}",
                   "PARAMS=params/smoke.yaml"], project)
    assert restore.returncode == 0
    run(["git", "add", "dvc.lock"], project)
    run(["git", "commit", "-qm", "run"], project)

    diff = run([dvc, "metrics", "diff", "HEAD", "--all", "--json"], project)
    metrics = json.loads(diff.stdout)["results/smoke/report/summary.json"]
    assert metrics["best_speedup"]["old"] == metrics["best_speedup"]["new"] is not None
    shown = run([dvc, "plots", "show", "--json", "-o", str(tmp_path / "plots")], project)
    plots = json.loads(shown.stdout)["data"]
    for name, (x, y) in {"main_table.csv": ("latency_shallow_ms", "top1"),
                         "lut_fidelity_pipeline.json": ("measured_ms", "predicted_ms")}.items():
        (spec,) = plots[f"results/smoke/report/{name}"]
        content = spec["content"]
        assert content["encoding"]["x"]["field"] == x and content["encoding"]["y"]["field"] == y
        assert content["encoding"]["color"]["field"] == "method"
        values = content["data"]["values"]
        assert len({row["method"] for row in values}) >= 2 and all(row[x] != "" for row in values)
        if name.endswith(".json"):  # the points are the rows, no other record merged into them
            rows = json.loads((project / f"results/smoke/report/{name}").read_text())["rows"]
            assert [(v["method"], v[x]) for v in values] == [(r["method"], r[x]) for r in rows]
    for image in ("pareto.png", "lut_fidelity.png"):
        assert plots[f"results/smoke/report/{image}"][0]["type"] == "image"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    (clone / ".dvc/config.local").write_text(
        f"['remote \"local\"']\n    url = {project.parent / 'dwnas-dvc-store'}\n")
    run([dvc, "pull"], clone)
    assert (clone / "results/smoke/elastic/elastic.pt").is_file()
    run(["make", "-o", str(VENV / ".installed-stamp"), "restore", f"VENV={VENV}",
         "PARAMS=params/smoke.yaml"], clone)
    dry = run([str(BIN / "snakemake"), "-n", "--configfile", "params/smoke.yaml"], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    assert "Data and pipelines are up to date" in run([dvc, "status"], clone).stdout
