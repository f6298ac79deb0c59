"""What the Snakefile derives from the params (``dwnas.workflow``), without Snakemake: the code each
stage runs, declared once and agreeing with dvc.yaml and with the code's own imports; the rule
files wired to it; the layout and input functions; the conda environment's pins."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dwnas.errors import DwnasError
from dwnas.workflow import (
    CODE_PARTS,
    SCHEDULE_PRIORITY,
    Layout,
    as_json,
    code_parts,
    code_stage,
    compared_models,
    eval_flags,
    gpu_processes,
    measure_device_flags,
    num_classes,
    side_by_side_threads,
    stage_digests,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dwnas"
RULES = REPO / "workflow/rules"
SMOKE = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "params/default.yaml").read_text())


def rule_blocks() -> dict[str, tuple[str, str]]:
    """Rule name -> (rule file, its text up to the next rule), for every rule of the workflow."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted(RULES.glob("*.smk"))]:
        text = path.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^rule (\w+):", text, re.M)]
        ends = [start for start, _ in starts[1:]] + [len(text)] if starts else []
        for (start, name), end in zip(starts, ends, strict=True):
            blocks[name] = (path.relative_to(REPO).as_posix(), text[start:end])
    return blocks


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def forced_rules(stage: dict) -> list[str]:
    """The rules a DVC stage runs: its command's ``--forcerun`` list."""
    words = stage["cmd"].split()
    start = words.index("--forcerun") + 1
    return words[start : words.index("--", start)]


# --- code parts: declared once, used by the rules and by dvc.yaml ----------------------------------


def test_every_code_part_exists():
    for stage, parts in CODE_PARTS.items():
        assert len(set(parts)) == len(parts), stage
        for part in parts:
            assert (PACKAGE / part).exists(), f"{stage}: dwnas/{part}"


def test_every_rule_that_runs_a_command_carries_its_stage_code_and_environment():
    shell_rules = {
        name: block for name, block in rule_blocks().items() if "\n    shell:" in block[1]
    }
    assert {"data_synth", "profile", "measure", "baseline_odn", "report"} <= set(shell_rules)
    for name, (path, block) in shell_rules.items():
        assert f'code=CODE["{code_stage(name)}"],' in block, f"{path}: rule {name}"
        assert '    conda:\n        "../envs/dwnas.yaml"\n' in block, f"{path}: rule {name}"


def test_code_stage_of_a_rule():
    assert code_stage("data_synth") == code_stage("data_prepare") == "data"
    assert code_stage("train_sweep") == "train"
    assert code_stage("baseline_hurricane_supernet") == "baselines"
    assert code_stage("profile") == "profile" and code_stage("measure") == "measure"
    with pytest.raises(DwnasError, match="rule nope: no code parts declared"):
        code_stage("nope")
    assert code_parts(["data_synth", "data_prepare"]) == ["data", "io.py"]
    assert code_parts(["baseline_odn", "baseline_hurricane"]) == list(CODE_PARTS["baselines"])


def test_dvc_stages_depend_on_the_code_and_rule_files_of_their_rules():
    """dvc.yaml's code deps are the code parts of the rules each stage forces (the same parts the
    rules' digests cover), and its workflow deps the rule files that define those rules."""
    defined_in = {name: path for name, (path, _) in rule_blocks().items()}
    stages = dvc_stages()
    assert set(stages) == {
        "data",
        "train",
        "profile",
        "search",
        "static_baselines",
        "searched_baselines",
        "transform",
        "measure",
        "report",
    }
    for name, stage in stages.items():
        rules = forced_rules(stage)
        code = [dep.removeprefix("dwnas/") for dep in stage["deps"] if dep.startswith("dwnas/")]
        assert code == code_parts(rules), name
        smk = {dep for dep in stage["deps"] if dep.startswith("workflow/")}
        assert smk == {defined_in[rule] for rule in rules}, name
        assert all(not Path(dep).is_absolute() for dep in stage["deps"]), name


def test_one_rule_file_per_stage():
    defined_in = {name: Path(path).name for name, (path, _) in rule_blocks().items()}
    assert defined_in["profile"] == "profile.smk"
    assert defined_in["measure"] == "measure.smk"
    assert defined_in["search"] == "search.smk" and defined_in["transform"] == "transform.smk"
    assert not re.search(r"^rule ", (RULES / "common.smk").read_text(), re.M)


def test_rule_files_define_no_functions():
    """`snakemake --lint` calls a rule file with a `def` "Mixed rules and functions": the
    functions live in dwnas.workflow, tested here."""
    for path in [REPO / "Snakefile", *RULES.glob("*.smk")]:
        assert not re.search(r"def .+?:", path.read_text()), path


def test_stage_digests_cover_every_stage():
    digests = stage_digests(PACKAGE)
    assert set(digests) == set(CODE_PARTS)
    assert digests["profile"] == digests["search"]  # one command module (search/commands.py)
    assert len({digests[s] for s in ("data", "train", "search", "measure", "report")}) == 5


# --- the parts cover what each stage's command imports --------------------------------------------

# The command module of each stage (dwnas.cli registers them).
COMMANDS = {
    "data": "data/commands.py",
    "train": "train/commands.py",
    "profile": "search/commands.py",
    "search": "search/commands.py",
    "transform": "transform/commands.py",
    "measure": "measure/commands.py",
    "baselines": "baselines/commands.py",
    "report": "report/commands.py",
}
# Shared machinery that computes no result: left out of every stage's code.
MACHINERY = {
    "cli.py",
    "track/__init__.py",
    "track/store.py",
    "track/liveness.py",
    "track/describe.py",
    "track/runs.py",
    "track/parent.py",
    "errors.py",
    "lazy.py",
    "progress.py",
    "procs.py",
    "config.py",
    "config_commands.py",
    "pipeline.py",
    "workflow.py",
    "__main__.py",
}
# Imports a stage's command module holds but that stage does not run.
NOT_RUN = {
    ("measure/api.py", "transform/export.py"): "latency_timer exports a module before timing "
    "it; the measure stage times files, the stages that time modules (profile, HURRICANE) "
    "count transform",
}


def _module_file(module: str) -> Path | None:
    path = REPO.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _lazy_exports(init: Path) -> dict[str, str]:
    """A package's ``_EXPORTS`` (name -> module), the names its ``__getattr__`` imports."""
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "_EXPORTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def imports_of(source: str) -> set[str]:
    """The package files (relative to dwnas/) ``source`` imports, at module level or in a
    function; a name taken from a package's lazy exports counts as its module."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / source).read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dwnas"):
            for alias in node.names:
                target = _module_file(f"{node.module}.{alias.name}") or _module_file(node.module)
                if target is not None and target.name == "__init__.py":
                    lazy = _lazy_exports(target).get(alias.name)
                    target = _module_file(lazy) if lazy else target
                if target is not None:
                    found.add(target.relative_to(PACKAGE).as_posix())
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = _module_file(alias.name) if alias.name.startswith("dwnas") else None
                if target is not None:
                    found.add(target.relative_to(PACKAGE).as_posix())
    return {f for f in found if f not in MACHINERY and not f.endswith("__init__.py")}


def runs(source: str) -> set[str]:
    """Every package file ``source`` imports, transitively, but for the NOT_RUN imports."""
    seen, todo = set(), [source]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += [f for f in imports_of(current) if (current, f) not in NOT_RUN]
    return seen


def files_of(parts) -> set[str]:
    files = set()
    for part in parts:
        path = PACKAGE / part
        files |= {
            p.relative_to(PACKAGE).as_posix()
            for p in (path.rglob("*.py") if path.is_dir() else [path])
        }
    return files


@pytest.mark.parametrize("stage", sorted(CODE_PARTS))
def test_code_parts_cover_what_the_stage_runs(stage):
    """Each stage's parts hold every file its command module imports (transitively), and each
    part holds at least one of them: an edit to code a stage runs re-runs it, an edit to code
    it does not run leaves it alone (up to the granularity of a folder)."""
    ran = runs(COMMANDS[stage])
    declared = files_of(CODE_PARTS[stage])
    assert sorted(ran - declared) == [], f"{stage} runs these, its parts miss them"
    unused = [part for part in CODE_PARTS[stage] if not files_of([part]) & ran]
    assert unused == [], f"{stage} declares code it does not run"


def test_each_not_run_import_is_still_there():
    for source, target in NOT_RUN:
        assert target in imports_of(source), (source, target)


def test_imports_of_resolves_lazy_exports():
    assert "transform/network.py" in imports_of("search/run.py")  # count_arch
    assert "nn/counters.py" in imports_of("transform/network.py")
    assert "transform/export.py" in imports_of("measure/api.py")  # latency_timer (NOT_RUN)


# --- values of params -------------------------------------------------------------------------------


def test_as_json_sorts_keys():
    assert as_json({"b": 1, "a": [2, {"d": 3, "c": 4}]}) == '{"a": [2, {"c": 4, "d": 3}], "b": 1}'


def test_num_classes_follows_the_data_source():
    params = copy.deepcopy(SMOKE)
    assert num_classes(params) == params["data"]["synth"]["classes"]
    params["data"]["source"] = "mnist"
    assert num_classes(params) == 10
    params["data"].update(source="imagenet", subset="imagenet100")
    assert num_classes(params) == 100
    params["data"]["subset"] = "all"
    assert num_classes(params) == 1000


def test_eval_flags():
    assert eval_flags({"calib_images": 64, "batch_size": 32, "val_images": 0}) == (
        "--calib-images 64 --eval-batch 32"
    )
    assert eval_flags({"calib_images": 64, "batch_size": 32, "val_images": 500}) == (
        "--calib-images 64 --eval-batch 32 --val-images 500"
    )


def test_measure_device_flags():
    assert measure_device_flags("host", {}) == "--device host"
    assert measure_device_flags("remote:jetson:8770", {"DWNAS_AGENT_TOKEN_FILE": "/t/tok"}) == (
        "--remote jetson:8770 --token-file /t/tok"
    )
    assert measure_device_flags("remote:h:1", {}).endswith("/.dwnas/agent.token")


def test_compared_models_reads_deep_only_resolution(tmp_path):
    summary = tmp_path / "transform.json"
    summary.write_text(json.dumps({"resolution": 96}))
    assert compared_models("d.onnx", "s.onnx") == "deep=d.onnx shallow=s.onnx"
    assert compared_models("d.onnx", "s.onnx", "o.onnx", str(summary)) == (
        "deep=d.onnx shallow=s.onnx deep-only=o.onnx@96"
    )


def test_gpu_processes_are_the_params_nproc():
    assert gpu_processes(SMOKE) == {
        "train_supernet": SMOKE["train"]["supernet"]["nproc"],
        "train_elastic": SMOKE["train"]["elastic"]["nproc"],
        "baseline_mobilenetv2": SMOKE["baselines"]["mobilenetv2"]["recipe"]["nproc"],
    }


# --- layout -----------------------------------------------------------------------------------------


def wildcards(**values) -> SimpleNamespace:
    return SimpleNamespace(**values)


@pytest.fixture
def smoke() -> Layout:
    return Layout(SMOKE)


def test_layout_names_from_the_params(smoke):
    assert smoke.results == "results/smoke"
    assert smoke.modes == ["double-win", "deep-only"]
    assert smoke.budgets == ["75pct", "90pct"]
    assert smoke.runtimes == SMOKE["measure"]["runtimes"]
    device, runtime = SMOKE["profile"]["device"], SMOKE["profile"]["runtime"]
    assert smoke.profile_dir == f"results/smoke/profile/{device}/{{runtime}}"
    assert smoke.search_lut == f"results/smoke/profile/{device}/{runtime}/lut.json"
    assert smoke.generated_data and smoke.raw_tree == "results/smoke/data/synth"
    imagenet = copy.deepcopy(SMOKE)
    imagenet["data"].update(source="imagenet", root="/data/imagenet")
    assert not Layout(imagenet).generated_data and Layout(imagenet).raw_tree == "/data/imagenet"


def test_measured_rows_leave_torch_out_of_remote_devices():
    params = copy.deepcopy(SMOKE)
    params["measure"].update(
        devices=["host", "remote:jetson:8770"], runtimes=["torch", "onnxruntime"]
    )
    assert Layout(params).measured_rows("m") == [
        "m/host/torch.json",
        "m/host/onnxruntime.json",
        "m/remote:jetson:8770/onnxruntime.json",
    ]


def test_every_measurement_of_the_smoke_params(smoke):
    rows = len(smoke.devices) * len(smoke.runtimes)
    assert len(smoke.searched_measures) == 2 * len(smoke.budgets) * rows
    variants = smoke.baseline_variants
    assert variants["depthshrinker"] == variants["hurricane"] == smoke.budgets
    assert variants["odn"] == SMOKE["baselines"]["odn"]["backbones"]
    assert len(variants["mobilenetv2"]) == (
        len(SMOKE["baselines"]["mobilenetv2"]["widths"])
        * len(SMOKE["baselines"]["mobilenetv2"]["resolutions"])
    )
    assert len(smoke.baseline_measures) == sum(map(len, variants.values())) * rows
    assert smoke.searched_measures[0].startswith("results/smoke/measure/double-win/75pct/")


def test_deploy_files_and_baseline_outputs():
    params = copy.deepcopy(SMOKE)
    params["measure"]["runtimes"] = ["torch", "onnxruntime"]
    layout = Layout(params)
    assert layout.deploy_files("f") == {
        "deep_torch": "f/deep.pt2",
        "deep_onnxruntime": "f/deep.onnx",
        "shallow_torch": "f/shallow.pt2",
        "shallow_onnxruntime": "f/shallow.onnx",
    }
    outputs = layout.baseline_outputs("odn")
    assert outputs["summary"] == "results/smoke/baselines/odn/{variant}/summary.json"
    assert outputs["shallow_onnxruntime"] == "results/smoke/baselines/odn/{variant}/shallow.onnx"
    assert layout.trained("odn") == [
        f"results/smoke/baselines/odn/{b}/transform.json"
        for b in SMOKE["baselines"]["odn"]["backbones"]
    ]


def test_variants_pattern_matches_exactly_the_variants(smoke):
    pattern = re.compile(f"^(?:{smoke.variants_pattern('mobilenetv2')})$")
    variants = smoke.baseline_variants["mobilenetv2"]
    assert variants == ["w0.35_r32"]  # params/smoke.yaml
    assert pattern.match("w0.35_r32")
    assert not pattern.match("w0.35_r320") and not pattern.match("w0x35_r32")  # "." escaped


def test_compared_files_of_a_row(smoke):
    device, runtime = SMOKE["profile"]["device"], SMOKE["profile"]["runtime"]
    suffix = {"torch": "pt2", "onnxruntime": "onnx"}[runtime]
    row = smoke.compared(
        wildcards(mode="double-win", budget="75pct", device=device, runtime=runtime)
    )
    folder = "results/smoke/transform/double-win/75pct"
    assert row == {
        "deep": f"{folder}/deep.{suffix}",
        "shallow": f"{folder}/shallow.{suffix}",
        "summary": f"{folder}/transform.json",
        "deep_only": f"results/smoke/transform/deep-only/75pct/deep.{suffix}",
        "deep_only_summary": "results/smoke/transform/deep-only/75pct/transform.json",
        "lut": f"results/smoke/profile/{device}/{runtime}/lut.json",
    }
    baseline = smoke.compared(
        wildcards(mode="odn", budget="mbconv", device="elsewhere", runtime=runtime)
    )
    assert set(baseline) == {"deep", "shallow", "summary"}
    assert baseline["summary"] == "results/smoke/baselines/odn/mbconv/transform.json"


def test_measure_job_params_from_its_inputs(tmp_path, smoke):
    summary = tmp_path / "transform.json"
    summary.write_text(json.dumps({"resolution": 64}))

    class Input(SimpleNamespace):  # Snakemake's InputFiles: names by attribute and keys()
        def keys(self):
            return vars(self).keys()

    plain = Input(deep="d", shallow="s", summary=str(summary))
    assert smoke.compared_models(None, plain) == "deep=d shallow=s"
    assert smoke.row_resolution(None, plain) == 64
    both = Input(
        deep="d", shallow="s", summary=str(summary), deep_only="o", deep_only_summary=str(summary)
    )
    assert smoke.compared_models(None, both) == "deep=d shallow=s deep-only=o@64"
    assert smoke.measure_device(wildcards(device="host")) == "--device host"


def test_search_and_profile_inputs(smoke):
    assert smoke.deep_only_picks(wildcards(mode="deep-only")) == []
    assert smoke.deep_only_picks(wildcards(mode="double-win")) == [
        f"results/smoke/search/deep-only/arch/{b}.json" for b in smoke.budgets
    ]
    checked = smoke.budget_check_flags(wildcards(runtime=SMOKE["profile"]["runtime"]))
    assert checked == (
        f"--budgets '{as_json(SMOKE['search']['budgets'])}' --modes double-win,deep-only"
    )
    assert smoke.budget_check_flags(wildcards(runtime="another")) == ""


def test_odn_space_flag(smoke):
    assert smoke.odn_space_flag(wildcards(variant="resnet")) == ""
    assert smoke.odn_space_flag(wildcards(variant="mbconv")) == (
        f"--space '{as_json(SMOKE['space'])}'"
    )


def test_odn_start_depth_per_backbone(smoke):
    assert smoke.odn_start_depth(wildcards(variant="mbconv")) == SMOKE["baselines"]["odn"]["start_depth"]
    default = Layout(DEFAULT)
    assert default.odn_start_depth(wildcards(variant="resnet18")) == 4
    assert default.odn_start_depth(wildcards(variant="mbconv")) == 1


def test_side_by_side_threads_halve_the_cores():
    assert [side_by_side_threads(c) for c in (None, 1, 2, 3, 16)] == [1, 1, 1, 1, 8]


def test_only_the_compared_methods_trainings_share_the_machine():
    """Timing jobs and the supernet's chain take every core; the baselines' trainings half."""
    blocks = rule_blocks()
    shared = {name for name, (_, text) in blocks.items() if "threads: SIDE_BY_SIDE" in text}
    assert shared == {"baseline_mobilenetv2", "baseline_depthshrinker", "baseline_hurricane",
                      "baseline_odn"}
    for name in ("measure", "profile", "baseline_hurricane_supernet", "train_supernet",
                 "train_elastic"):
        assert "threads: workflow.cores" in blocks[name][1], name


def test_whole_machine_jobs_are_scheduled_before_side_by_side_ones():
    """A job that takes every core cannot start beside a single-thread one: it must outrank them
    all, or a core idles while it waits. Snakemake's scheduler sums the priorities of the jobs it
    starts together, so it must outrank any set of them (`measure`, which waits for the
    trainings it times, keeps 0). Each rule named in the table uses its entry."""
    blocks = rule_blocks()
    assert set(SCHEDULE_PRIORITY) <= set(blocks)
    for name, (_, text) in blocks.items():
        line = f'priority: SCHEDULE_PRIORITY["{name}"]'
        assert (line in text) == (name in SCHEDULE_PRIORITY), name
        assert "priority:" not in text.replace(line, ""), name
    whole = {n for n, (_, t) in blocks.items() if "threads: workflow.cores" in t}
    side = {n for n, (_, t) in blocks.items() if "threads: SIDE_BY_SIDE" in t}
    ranked_whole = [SCHEDULE_PRIORITY[n] for n in whole if n in SCHEDULE_PRIORITY]
    assert {"profile", "train_supernet", "train_elastic", "baseline_hurricane_supernet"} <= whole
    assert min(ranked_whole) > 64 * max(SCHEDULE_PRIORITY.get(n, 0) for n in side)


def test_default_params_layout():
    layout = Layout(DEFAULT)
    assert layout.results == f"results/{DEFAULT['name']}"
    assert layout.budgets and layout.searched_measures and layout.baseline_measures


# --- the conda environment ----------------------------------------------------------------------


def test_conda_environment_pins_what_pyproject_pins():
    """workflow/envs/dwnas.yaml (`snakemake --sdm conda`) installs pyproject.toml's dependencies,
    word for word, a Python that pyproject allows, and this checkout (editable)."""
    from packaging.specifiers import SpecifierSet

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    env = yaml.safe_load((REPO / "workflow/envs/dwnas.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    python = next(d for d in conda if d.startswith("python"))
    version = python.removeprefix("python=")
    assert version in SpecifierSet(project["requires-python"]), python
    assert "pip" in conda
    package = [p for p in pip if p.startswith(("-e ", "--editable "))]
    assert [p for p in pip if p not in package] == project["dependencies"]
    assert len(package) == 1
    checkout = (REPO / "workflow/envs" / package[0].split()[-1]).resolve()
    assert checkout == REPO and (checkout / "pyproject.toml").is_file()
