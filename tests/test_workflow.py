"""The workflow as Snakemake users drive it, without running a stage: the profile found with no
flag, what a cluster profile may change, code digests, and `dwnas run`'s restart machinery (stale
locks, process groups). End-to-end restarts are in test_restart.py (slow)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dwnas.errors import DwnasError
from dwnas.pipeline import dvc_params_file, group_members, live_snakemakes, stop_group
from dwnas.workflow import check_granted_gpus, code_digest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
            "DWNAS_TRACKING": "0"}


def clone(dest: Path) -> Path:
    """The repo's tracked files, as a fresh clone has them (no .snakemake, no results)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for name in ("dwnas/pipeline.py", "profiles/default/config.yaml", "profiles/slurm/config.yaml",
                 "profiles/slurm-local/config.yaml"):
        if not (dest / name).exists():  # before the files are committed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return clone(tmp_path_factory.mktemp("clone"))


def test_snakemake_finds_the_default_profile_with_no_flag(project):
    """`--dag`, `--rulegraph` and `--lint` need cores: the profile gives them on a fresh clone,
    where `--lint` finds nothing (exit 0)."""
    for flag in ("--dag", "--rulegraph"):
        done = run([str(BIN / "snakemake"), flag], project)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "workflow specific profile profiles/default" in done.stderr
        assert done.stdout.lstrip().startswith("digraph"), flag
    lint = run([str(BIN / "snakemake"), "--lint"], project)
    assert "Workflow requires a total number of cores" not in lint.stdout + lint.stderr
    # it linted, and found nothing (no "Lints for rule ..." / "Lints for snakefile ...")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    assert "Lints for" not in lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    dry = run([str(BIN / "snakemake"), "-n", "--configfile", "params/smoke.yaml"], project)
    assert dry.returncode == 0 and "data_synth" in dry.stdout
    assert "/" + str(project).strip("/") + "/dwnas" not in dry.stdout  # no absolute code inputs


def _job_stats(output: str) -> dict[str, int]:
    table = output[output.index("Job stats"):]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_rule_files_are_included_in_any_order_after_common(project, tmp_path):
    """common.smk holds every name the rule files share: the rule files, included in reverse
    order after it, plan the same jobs."""
    reversed_ = clone(tmp_path / "reversed")
    snakefile = reversed_ / "Snakefile"
    lines = snakefile.read_text().splitlines(keepends=True)
    includes = [n for n, line in enumerate(lines) if line.startswith('include: "workflow/rules/')]
    assert lines[includes[0]] == 'include: "workflow/rules/common.smk"\n' and len(includes) >= 9
    rule_files = [lines[n] for n in includes[1:]]
    for n, line in zip(includes[1:], reversed(rule_files), strict=True):
        lines[n] = line
    snakefile.write_text("".join(lines))
    plans = [run([str(BIN / "snakemake"), "-n", "--configfile", "params/smoke.yaml"], where)
             for where in (project, reversed_)]
    for done in plans:
        assert done.returncode == 0, done.stderr[-3000:]
    assert _job_stats(plans[1].stdout) == _job_stats(plans[0].stdout)
    assert _job_stats(plans[0].stdout)["measure"] >= 8


def _slurm_dry_run(project: Path, params: Path, profile: Path) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), "-n", "-p", "--profile", str(profile), "--configfile",
                str(params)], project)


def _nproc(project: Path, supernet: int, tmp_path: Path) -> Path:
    params = yaml.safe_load((project / "params/smoke.yaml").read_text())
    params["train"]["supernet"]["nproc"] = supernet
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_slurm_profile_grants_resources_and_params_decide_nproc(project, tmp_path):
    slurm = project / "profiles/slurm"
    done = _slurm_dry_run(project, project / "params/smoke.yaml", slurm)
    assert done.returncode == 0, done.stderr[-3000:]
    supernet = [line for line in done.stdout.splitlines() if "dwnas train supernet" in line]
    assert supernet and all("--nproc 1 " in line for line in supernet)
    two = _slurm_dry_run(project, _nproc(project, 2, tmp_path), slurm)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "--nproc 2 " in "".join(line for line in two.stdout.splitlines() if "train supernet" in line)


def test_a_profile_that_changes_the_gpus_of_a_rule_is_an_error(project, tmp_path):
    profile = tmp_path / "gpu8"
    profile.mkdir()
    config = yaml.safe_load((project / "profiles/slurm/config.yaml").read_text())
    config["set-resources"]["train_supernet"]["gpu"] = 8
    (profile / "config.yaml").write_text(yaml.safe_dump(config))
    done = _slurm_dry_run(project, project / "params/smoke.yaml", profile)
    assert done.returncode != 0
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train_supernet: gpu=8" in errors[0] and "nproc 1" in errors[0]
    ok = _slurm_dry_run(project, _nproc(project, 8, tmp_path), profile)  # params agree: fine
    assert ok.returncode == 0, ok.stderr[-3000:]


def test_check_granted_gpus():
    check_granted_gpus({"a": 2}, {"a": {"gpu": 2}, "b": {"gpu": 4}})
    check_granted_gpus({"a": 2}, {})
    with pytest.raises(DwnasError, match="set-resources a: gpu=4 but the params run it with nproc 2"):
        check_granted_gpus({"a": 2}, {"a": {"gpu": "4"}})
    with pytest.raises(DwnasError, match="gpu='x' is not a number"):
        check_granted_gpus({"a": 2}, {"a": {"gpu": "x"}})
    check_granted_gpus({"a": 2}, {"a": {"gpu": 0}})  # no GPUs: the 2 processes run on CPUs
    with pytest.raises(DwnasError, match="set-resources a: gpu=-1"):
        check_granted_gpus({"a": 2}, {"a": {"gpu": -1}})


def test_local_slurm_profile_is_the_cluster_profile_sized_to_one_node(project, tmp_path):
    """profiles/slurm-local (scripts/local-slurm.sh's cluster) has the cluster profile's executor
    and rules; it grants no GPUs, and the params still decide the processes."""
    real = yaml.safe_load((project / "profiles/slurm/config.yaml").read_text())
    local = yaml.safe_load((project / "profiles/slurm-local/config.yaml").read_text())
    assert local["executor"] == real["executor"] == "slurm"
    assert set(real["set-resources"]) <= set(local["set-resources"])
    assert set(real["default-resources"]) - {"slurm_account"} <= set(local["default-resources"])
    assert {rule for rule, res in local["set-resources"].items() if "gpu" in res} == {
        "train_supernet", "train_elastic", "baseline_mobilenetv2"}
    assert all(res.get("gpu", 0) == 0 for res in local["set-resources"].values())
    done = _slurm_dry_run(project, _nproc(project, 2, tmp_path), project / "profiles/slurm-local")
    assert done.returncode == 0, done.stderr[-3000:]
    supernet = [line for line in done.stdout.splitlines() if "dwnas train supernet" in line]
    assert supernet and all("--nproc 2 " in line for line in supernet)


def test_code_digest_follows_contents_not_location_or_mtime(tmp_path):
    package = tmp_path / "a/pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub/x.py").write_text("x = 1\n")
    (package / "y.py").write_text("y = 1\n")
    (package / "sub/notes.txt").write_text("not code")
    digest = code_digest(package, ("sub", "y.py"))
    assert digest.startswith("sha256:")
    os.utime(package / "y.py", (0, 0))
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    assert code_digest(tmp_path / "moved/pkg", ("sub", "y.py")) == digest
    (package / "sub/notes.txt").write_text("changed, not code")
    assert code_digest(package, ("sub", "y.py")) == digest
    (package / "sub/x.py").write_text("x = 2\n")
    assert code_digest(package, ("sub", "y.py")) != digest
    assert code_digest(package, ("sub",)) != code_digest(package, ("y.py",))
    with pytest.raises(DwnasError, match="nope.py: package source not found"):
        code_digest(package, ("nope.py",))


def test_dvc_params_file_reads_dvc_yaml_vars(project, tmp_path):
    assert dvc_params_file(project) == project / "params/default.yaml"
    assert dvc_params_file(tmp_path) is None


def _fake_snakemake(where: Path, cwd: Path) -> subprocess.Popen:
    """A real process whose argv[1] is named `snakemake`, working in ``cwd``."""
    script = where / "snakemake"
    script.write_text("import time\ntime.sleep(120)\n")
    return subprocess.Popen([sys.executable, str(script), "--cores", "1"], cwd=cwd)


def test_live_snakemakes_sees_a_snakemake_working_in_the_directory(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    assert live_snakemakes(workdir) == []
    fake = _fake_snakemake(tmp_path, workdir)
    try:
        deadline = time.monotonic() + 10
        while live_snakemakes(workdir) != [fake.pid] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live_snakemakes(workdir) == [fake.pid]
        assert live_snakemakes(tmp_path) == []
    finally:
        fake.kill()
        fake.wait()
    assert live_snakemakes(workdir) == []


def test_stop_group_stops_every_process_of_the_group():
    group = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(group_members(group.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(group.pid)) == 3
    assert len(stop_group(group.pid, grace_s=5)) == 3
    group.wait(timeout=10)
    assert group_members(group.pid) == []


def test_a_stage_stops_when_its_runner_is_gone(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stage = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom dwnas.pipeline import follow_runner\n"
         "follow_runner()\nprint('started', flush=True)\ntime.sleep(60)"],
        env={**env(), "DWNAS_RUNNER_PID": str(runner.pid)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert stage.stdout.readline() == "started\n"
    time.sleep(0.5)
    assert stage.poll() is None  # runs while its runner lives
    runner.kill()
    runner.wait()
    assert stage.wait(timeout=10) == -signal.SIGTERM
    assert "is gone: stopping" in stage.stderr.read()


def test_dwnas_run_removes_a_stale_lock_and_refuses_a_live_one(project, tmp_path):
    locks = project / ".snakemake/locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.input.lock").write_text("x")  # what a snakemake killed with SIGKILL leaves
    dwnas = [str(BIN / "dwnas"), "run", "--configfile", "params/smoke.yaml", "--", "-n"]
    done = run(dwnas, project)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "removing the stale lock" in done.stderr
    assert not any(locks.iterdir())

    (locks / "0.input.lock").write_text("x")
    fake = _fake_snakemake(tmp_path, project)
    try:
        time.sleep(0.5)
        refused = run(dwnas, project)
    finally:
        fake.kill()
        fake.wait()
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"error: {project}: snakemake (pid {fake.pid}) is running in "
                                       "this directory; wait for it or stop it first")
    assert (locks / "0.input.lock").exists()
    (locks / "0.input.lock").unlink()


def test_dwnas_run_passes_targets_to_snakemake(project):
    target = "results/smoke/supernet/supernet.pt"
    done = run([str(BIN / "dwnas"), "run", "--cores", "1", "--configfile", "params/smoke.yaml",
                "--", "-n", target], project)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "rule train_supernet:" in out and "rule measure" not in out, out[-3000:]


def test_dwnas_run_bad_params_file_is_one_error_line(project):
    done = run([str(BIN / "dwnas"), "run", "--configfile", "params/nope.yaml"], project)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: params/nope.yaml: params file not found"


def test_dwnas_run_unreadable_or_invalid_params_are_error_lines_before_snakemake(project, tmp_path):
    """Random bytes were Snakemake's UnicodeDecodeError traceback (rc 1); a bad value was
    Snakemake's WorkflowError block. Both are now `error:` lines, rc 2, no snakemake started."""
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81\xc3\x28" * 8)
    bad = tmp_path / "bad.yaml"
    params = yaml.safe_load((project / "params/smoke.yaml").read_text())
    params["train"]["supernet"]["lr"] = -1
    bad.write_text(yaml.safe_dump(params))
    for path, expected in ((garbage, f"error: {garbage}: not a UTF-8 YAML file"),
                           (bad, f"error: {bad}: train.supernet.lr: must be > 0 (got -1)")):
        done = run([str(BIN / "dwnas"), "run", "--configfile", str(path), "--", "-n"], project)
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.strip() == expected  # nothing from snakemake: it never started


def test_dvc_commit_records_the_run_and_keeps_modification_times(tmp_path):
    """`dwnas run --dvc-commit`'s last step, with the real dvc: dvc.lock records the outputs,
    `dvc status` is clean, and Snakemake's view (modification times) is what it was."""
    from dwnas.pipeline import dvc_commit

    project = tmp_path / "p"
    (project / "params").mkdir(parents=True)
    (project / "params/p.yaml").write_text("name: p\nx: 1\n")
    (project / "dvc.yaml").write_text(
        "vars:\n  - params/p.yaml:name\nstages:\n  s:\n    cmd: 'true'\n"
        "    params:\n      - params/p.yaml:\n          - x\n"
        "    outs:\n      - results/${name}/out:\n          persist: true\n"
        "      - results/${name}/one.txt:\n          persist: true\n")
    out = project / "results/p/out"
    out.mkdir(parents=True)
    (out / "a.txt").write_text("a")
    (project / "results/p/one.txt").write_text("one")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True, env=env())
    for i, path in enumerate([out / "a.txt", out, project / "results/p/one.txt"]):
        os.utime(path, ns=(10**18 + i, 10**18 + i))
    before = {p: p.stat().st_mtime_ns for p in (out / "a.txt", out, project / "results/p/one.txt")}
    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert dvc_commit(project, Path("params/p.yaml")) == 0
    finally:
        os.chdir(cwd)
    assert "results/p/one.txt" in (project / "dvc.lock").read_text()
    assert {p: p.stat().st_mtime_ns for p in before} == before
    status = run([str(BIN / "dvc"), "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    other = tmp_path / "other.yaml"
    other.write_text("name: q\n")
    (project / "dvc.lock").unlink()
    assert dvc_commit(project, other) == 0  # another params file: dvc.lock left alone
    assert not (project / "dvc.lock").exists()


def test_a_failed_job_ends_the_run_with_its_log_tail(project):
    """A stage that fails (a corrupt image, data.on_corrupt: fail): `dwnas run` ends with the tail
    of its log, the error line in it."""
    data = project / "results/smoke/data"
    dwnas = [str(BIN / "dwnas"), "run", "--cores", "1", "--configfile", "params/smoke.yaml", "--"]
    try:
        made = run([*dwnas, "results/smoke/data/synth"], project)
        assert made.returncode == 0, made.stderr[-3000:]
        image = sorted((data / "synth").rglob("*.JPEG"))[0]
        image.write_bytes(b"not an image")
        done = run([*dwnas, "results/smoke/data/prepared"], project)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert done.returncode != 0
    tail = done.stderr[done.stderr.rindex("dwnas run: rule "):]
    assert tail.startswith("dwnas run: rule data_prepare failed; the last "), tail
    assert "error:" in tail and image.name in tail, tail
    assert len(tail.splitlines()) <= 16


def test_failed_jobs_reads_snakemake_error_blocks():
    from dwnas.pipeline import failed_jobs

    text = ("Error in rule profile:\n    message: None\n    jobid: 13\n"
            "    log: results/a.log, results/b.log (check log file(s) for error details)\n"
            "    shell:\n        dwnas profile ...\nShutting down\nError in rule report:\n"
            "    jobid: 2\n")
    assert failed_jobs(text) == [("profile", ["results/a.log", "results/b.log"]),
                                 ("report", [])]
