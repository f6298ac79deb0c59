"""The slurm profile on a real Slurm: a one-node cluster from Debian's packages
(scripts/local-slurm.sh) runs the smoke pipeline with snakemake-executor-plugin-slurm, every rule
a Slurm job (profiles/slurm-local), and `dwnas train --nproc 2` under `srun` (torchrun, 2 gloo
processes in one allocation).

Needs root and Debian's munge, slurmctld, slurmd and slurm-client (`.ci/run` installs them;
`scripts/local-slurm.sh install` does too); without them the module is skipped, unless
``DWNAS_REQUIRE_SLURM=1`` (CI) makes that a failure. The cluster is started for the module and
stopped after it (left running if it was already up).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_pipeline import env, make_project, planned_jobs, run
from training_args import SMOKE, recipe, supernet_args

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPT = REPO / "scripts/local-slurm.sh"
pytestmark = pytest.mark.slow

# The rules whose outputs are computed without timing anything: a Slurm job's must equal the
# local run's (byte for byte for JSON, tensor for tensor for checkpoints).
DETERMINISTIC = ["data/synth", "data/prepared/train.csv", "data/prepared/val.csv",
                 "data/prepared/classes.json", "supernet/supernet.pt", "elastic/elastic.pt",
                 "fixed/fixed.pt", "sweep/elastic.json", "sweep/non-elastic.json"]
# 2 processes x batch 8 against 1 process x batch 16 (the same 16 images a step, the same
# subnets): the gradients are averaged over the same global batch, but each rank's BatchNorm
# normalises with its own 8 images' statistics. The bound on ||w_2proc - w_1proc|| over
# ||w_other_seed - w_1proc|| (docs/cluster.md, measured there).
DISTRIBUTED_TOLERANCE = 0.75


def slurm_command(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def slurm():
    """The one-node Slurm, up for this module."""
    path = f"{os.environ['PATH']}:/usr/sbin:/sbin"
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue")
               if not shutil.which(name, path=path)]
    reason = None
    if os.geteuid() != 0:
        reason = "the local Slurm needs root (slurmd starts jobs as their user)"
    elif missing:
        reason = (f"Slurm not installed ({', '.join(missing)} missing): scripts/local-slurm.sh "
                  "install (apt-get install munge slurmctld slurmd slurm-client)")
    if reason:
        if os.environ.get("DWNAS_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    was_up = slurm_command("status").returncode == 0
    up = slurm_command("up")
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    if not was_up:
        down = slurm_command("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert slurm_command("status").returncode == 3


def test_local_slurm_is_one_node_of_this_machine_and_up_is_idempotent(slurm):
    again = slurm_command("up")
    assert again.returncode == 0 and "already up" in again.stdout
    status = slurm_command("status")
    assert status.returncode == 0, status.stdout + status.stderr
    node = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%P %T %c"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert node == ["local*", "idle", str(os.cpu_count())]


def slurm_jobs(run_id: str) -> list[tuple[str, str]]:
    """(rule, state) of every Slurm job of one snakemake run (the plugin names each job after the
    run and puts `rule_<name>[_wildcards_...]` in its comment)."""
    done = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id,
                           "--format=%k|%T"], capture_output=True, text=True, check=True)
    jobs = []
    for line in done.stdout.split():
        comment, state = line.split("|")
        jobs.append((comment.removeprefix("rule_").split("_wildcards_")[0], state))
    return jobs


def weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v for k, v in ckpt["state_dict"].items() if v.is_floating_point()}


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory) -> dict:
    """The smoke pipeline through profiles/slurm-local, and its training stages run locally."""
    project = make_project(tmp_path_factory.mktemp("slurm"))
    start = time.monotonic()
    done = run([str(BIN / "snakemake"), "--profile", "profiles/slurm-local", "--configfile",
                "params/smoke.yaml"], project, check=False, timeout=3600)
    seconds = time.monotonic() - start
    local = make_project(tmp_path_factory.mktemp("local"))
    targets = ["results/smoke/data/prepared", "results/smoke/sweep/elastic.json",
               "results/smoke/sweep/non-elastic.json"]  # and so every file of DETERMINISTIC
    start = time.monotonic()
    run([str(BIN / "snakemake"), *targets, "--cores", "2", "--configfile", "params/smoke.yaml"],
        local, timeout=1800)  # targets first: --configfile takes every path after it
    print(f"smoke pipeline through Slurm: {seconds:.0f} s; its training stages locally: "
          f"{time.monotonic() - start:.0f} s")
    return {"project": project, "local": local, "done": done, "seconds": seconds}


@pytest.mark.timeout(5400)  # the module's pipeline run happens in this test's setup
def test_smoke_pipeline_runs_through_slurm_every_rule_a_job(slurm_run):
    done = slurm_run["done"]
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    assert (slurm_run["project"] / "results/smoke/report/summary.json").is_file()
    run_id = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("SLURM run ID:"))
    jobs = slurm_jobs(run_id)
    assert {state for _, state in jobs} == {"COMPLETED"}, jobs
    planned = planned_jobs(out)
    planned.pop("all")  # the target rule: no shell command, nothing to submit
    assert collections.Counter(rule for rule, _ in jobs) == planned


def test_deterministic_outputs_equal_the_local_run(slurm_run):
    cluster = slurm_run["project"] / "results/smoke"
    local = slurm_run["local"] / "results/smoke"
    for path in DETERMINISTIC:
        if path.endswith(".pt"):
            a, b = weights(cluster / path), weights(local / path)
            assert a.keys() == b.keys(), path
            assert all(torch.equal(a[k], b[k]) for k in a), path
        elif (cluster / path).is_dir():
            files = sorted(p.relative_to(cluster / path) for p in (cluster / path).rglob("*"))
            assert files == sorted(p.relative_to(local / path) for p in (local / path).rglob("*"))
            for name in files:
                a, b = cluster / path / name, local / path / name
                if a.is_file():
                    assert a.read_bytes() == b.read_bytes(), a
        else:
            assert (cluster / path).read_bytes() == (local / path).read_bytes(), path
    for stage in ("supernet", "elastic", "fixed"):
        a = json.loads((cluster / stage / "summary.json").read_text())
        b = json.loads((local / stage / "summary.json").read_text())
        for summary in (a, b):
            summary["final"].pop("images_per_s")
            summary.pop("seconds", None)
        assert a["final"] == b["final"], stage


def test_mlflow_stage_runs_are_logged_as_locally(slurm_run):
    import mlflow

    project = slurm_run["project"]
    mlflow.set_tracking_uri(f"sqlite:///{project}/results/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["dwnas-smoke"], output_format="pandas")
    pipelines = runs[runs["tags.dwnas.stage"] == "pipeline"]
    assert len(pipelines) == 1 and set(pipelines["status"]) == {"FINISHED"}
    stages = runs[runs["tags.dwnas.stage"] != "pipeline"]
    assert set(stages["tags.mlflow.parentRunId"]) == set(pipelines["run_id"])
    assert set(stages["status"]) == {"FINISHED"}
    assert {"data_prepare", "train_supernet", "train_elastic", "search_double-win", "transform",
            "measure"} <= set(stages["tags.dwnas.stage"])
    measure = stages[stages["tags.dwnas.stage"] == "measure"]
    assert set(measure["tags.dwnas.runtime"]) == set(SMOKE["measure"]["runtimes"])


def _train(cmd: list[str], out: Path) -> dict:
    """One training command, tracked to a store of its own beside ``out``."""
    out.mkdir()
    tracking = out.with_name(f"{out.name}-mlflow")
    tracking.mkdir()
    environment = {**env(), "OMP_NUM_THREADS": "1",
                   "MLFLOW_TRACKING_URI": f"sqlite:///{tracking}/mlflow.db"}
    done = subprocess.run(cmd, env=environment, cwd=out.parent, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads((out / "summary.json").read_text())


def _elastic(prepared: Path, init: Path, out: Path, seed: int, batch_size: int) -> list[str]:
    """``dwnas train elastic`` at one resolution from ``init``: its starting weights do not depend
    on the seed, so runs with other seeds (other batches, other subnets) give the scale of what
    differs between two equally valid trainings."""
    return ["train", "elastic", "--prepared", str(prepared), "--init", str(init),
            "--recipe", json.dumps(recipe(batch_size=batch_size)), "--resolution-min", "32",
            "--resolution-max", "32", "--seed", str(seed), "--calib-images", "16",
            "--out", str(out / "elastic.pt"), "--summary", str(out / "summary.json")]


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """L2 distance over the trained weights (BN running statistics left out: evaluation
    recalibrates them)."""
    keys = [k for k in a if "running" not in k]
    return float(torch.cat([(a[k] - b[k]).reshape(-1) for k in keys]).norm())


def test_two_processes_under_srun(slurm, prepared, tmp_path):
    """`dwnas train --nproc 2` as one Slurm task with 2 CPUs: torchrun starts 2 gloo processes
    in the allocation. Tensor for tensor the same as the 2 processes started without Slurm; rank
    0 alone writes. Against 1 process over the same global batch (16 images a step, the same
    subnets) it is not equal, as docs/training.md says: each rank's BatchNorm normalises its 8
    images with their own statistics. How far: closer than the 1-process run with another seed,
    by the factor DISTRIBUTED_TOLERANCE bounds (measured in docs/cluster.md)."""
    dwnas = [str(BIN / "dwnas")]
    srun = ["srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--time=20"]
    init = tmp_path / "init"
    _train([*dwnas, *supernet_args(prepared, init, batch_size=16)], init)
    init = init / "supernet.pt"
    runs = {}
    for name, launch, seed, batch, nproc in (("srun", srun, 3, 8, 2), ("torchrun", [], 3, 8, 2),
                                             ("one", [], 3, 16, 1), ("other_seed", [], 4, 16, 1)):
        out = tmp_path / name
        runs[name] = _train([*launch, *dwnas, *_elastic(prepared, init, out, seed, batch),
                             "--nproc", str(nproc)], out)
    assert runs["srun"]["world_size"] == runs["torchrun"]["world_size"] == 2
    assert runs["one"]["world_size"] == 1
    assert runs["srun"]["images_seen"] == runs["one"]["images_seen"]

    # rank 0 alone writes: the two outputs, one MLflow run
    assert sorted(p.name for p in (tmp_path / "srun").iterdir()) == ["elastic.pt", "summary.json"]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/srun-mlflow/mlflow.db")
    tracked = mlflow.search_runs(search_all_experiments=True, output_format="pandas")
    assert len(tracked) == 1 and tracked["params.world_size"].tolist() == ["2"]

    w = {name: weights(tmp_path / name / "elastic.pt") for name in runs}
    assert all(torch.equal(w["srun"][k], w["torchrun"][k]) for k in w["srun"])  # Slurm: no change
    ratio = _distance(w["srun"], w["one"]) / _distance(w["other_seed"], w["one"])
    print(f"2 processes vs 1: {_distance(w['srun'], w['one']):.4f}; another seed vs 1: "
          f"{_distance(w['other_seed'], w['one']):.4f}; ratio {ratio:.3f}")
    assert ratio < DISTRIBUTED_TOLERANCE


def test_a_profile_granting_other_gpus_stops_before_any_slurm_job(slurm, tmp_path):
    """Under the real executor, as in a dry run: the mismatch is an error before any submission."""
    import yaml

    project = make_project(tmp_path / "project")
    config = yaml.safe_load((project / "profiles/slurm-local/config.yaml").read_text())
    config["set-resources"]["train_supernet"]["gpu"] = 2
    (tmp_path / "gpu2").mkdir()
    (tmp_path / "gpu2/config.yaml").write_text(yaml.safe_dump(config))
    jobs = ["squeue", "--states=all", "--noheader", "--format=%i"]
    before = subprocess.run(jobs, capture_output=True, text=True, check=True).stdout
    done = run([str(BIN / "snakemake"), "--profile", str(tmp_path / "gpu2"), "--configfile",
                "params/smoke.yaml"], project, check=False, timeout=300)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "set-resources train_supernet: gpu=2 but the params run it with nproc 1" in errors[0]
    assert subprocess.run(jobs, capture_output=True, text=True, check=True).stdout == before
    assert not (project / "results/smoke").exists()
