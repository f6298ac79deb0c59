"""What the Snakefile derives from the params: file layout, input functions, flags, code digests.

The rule files (``workflow/rules/*.smk``) only wire these to ``dwnas`` commands; everything here is
plain Python, tested in ``tests/test_workflow_layout.py``, and kept free of heavy imports (no
torch): Snakemake imports it on every call, a dry run included.

- :data:`CODE_PARTS`: the package sources each stage runs, declared once. A rule carries their
  :func:`code_digest` as its ``code`` param (an edit re-runs it through Snakemake's params
  trigger), and ``dvc.yaml`` lists the same parts as the stage's ``deps`` (a test checks both,
  and that the parts cover what the stage's command module imports).
- :class:`Layout`: the names shared between rule files (modes, budgets, runtimes, devices, the
  rows measured, the files compared) and the input functions that need them.
- :func:`check_granted_gpus`: a profile grants resources, the params decide what a rule computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError

MODES = ("double-win", "deep-only")
# Sources the pipeline generates itself (data_synth, data_mnist); any other reads the user's tree.
GENERATED_SOURCES = ("synth", "mnist")
METHODS = ("mobilenetv2", "depthshrinker", "hurricane", "odn")
STATIC_BASELINES = ("mobilenetv2", "odn")  # fixed architectures, trained from scratch
SEARCHED_BASELINES = ("depthshrinker", "hurricane")  # found by a search


# Code each stage runs --------------------------------------------------------------------------

# Reading a prepared dataset (training, and the evaluation of search and transform).
_LOADING = ("data/loaders.py", "data/manifest.py", "data/pack.py", "data/verify.py")
_EVALUATING = ("train/evaluate.py", *_LOADING)

# Stage -> the package sources (modules, or folders of them, relative to ``dwnas/``) its command
# runs: the command module and, transitively, what it imports. The shared machinery that computes
# no result (cli, track, errors, progress, procs, config, pipeline, this module) is left out, so
# an edit to it re-runs nothing. Each rule's ``code`` param is the digest of its stage's parts,
# and dvc.yaml's stage ``deps`` list the same parts.
CODE_PARTS: dict[str, tuple[str, ...]] = {
    "data": ("data", "io.py"),
    "train": ("train", "nn", "space.py", *_LOADING, "io.py"),
    # `dwnas profile` and `dwnas search` share their command module (dwnas/search/commands.py)
    # (the profile's fidelity figure is drawn by dwnas/report/figures.py)
    "profile": ("search", "measure", "transform", "nn", "space.py", *_EVALUATING, "io.py",
                "report/figures.py", "report/tables.py"),
    "search": ("search", "measure", "transform", "nn", "space.py", *_EVALUATING, "io.py",
               "report/figures.py", "report/tables.py"),
    "transform": (
        "transform",
        "nn",
        "space.py",
        "measure/models.py",
        "measure/settings.py",
        *_EVALUATING,
        "io.py",
    ),
    "measure": ("measure", "io.py"),
    "baselines": (
        "baselines",
        "train",
        "search",
        "measure",
        "transform",
        "nn",
        "space.py",
        *_LOADING,
        "io.py",
    ),
    "report": (
        "report",
        "search/latency.py",
        "transform",
        "nn",
        "measure/settings.py",
        "space.py",
        "io.py",
    ),
}


def code_stage(rule: str) -> str:
    """The stage whose code a rule runs: ``data_prepare`` -> ``data``, ``baseline_odn`` ->
    ``baselines``, ``search`` -> ``search``."""
    for prefix, stage in (("data_", "data"), ("train_", "train"), ("baseline_", "baselines")):
        if rule.startswith(prefix):
            return stage
    if rule not in CODE_PARTS:
        raise DwnasError(f"rule {rule}: no code parts declared in dwnas.workflow.CODE_PARTS")
    return rule


def code_parts(rules: Iterable[str]) -> list[str]:
    """The code parts of ``rules`` together, in declaration order (a DVC stage's code ``deps``)."""
    parts: dict[str, None] = {}
    for rule in rules:
        parts.update(dict.fromkeys(CODE_PARTS[code_stage(rule)]))
    return list(parts)


def code_digest(package: Path, parts: tuple[str, ...] | list[str]) -> str:
    """``sha256:<hex>`` of the sources under ``package`` named by ``parts`` (modules or folders
    of ``*.py``): their paths relative to ``package`` and their bytes, in sorted order. A rule
    carries it as a param, so Snakemake re-runs the rule when the code it runs changes (content,
    not modification times, and no absolute path)."""
    files = set()
    for part in parts:
        path = Path(package, part)
        if path.is_dir():
            files.update(path.rglob("*.py"))
        elif path.is_file():
            files.add(path)
        else:
            raise DwnasError(f"{path}: package source not found")
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def stage_digests(package: Path) -> dict[str, str]:
    """Stage -> :func:`code_digest` of its :data:`CODE_PARTS`."""
    return {stage: code_digest(package, parts) for stage, parts in CODE_PARTS.items()}


# Values of params ------------------------------------------------------------------------------


def relative(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory: what Snakemake records (inputs, params) must
    not name the checkout's location, so a moved or re-cloned checkout re-runs nothing."""
    return os.path.relpath(path)


def as_json(value: Any) -> str:
    """A params section as a rule parameter: key order never counts as a change."""
    return json.dumps(value, sort_keys=True)


def num_classes(config: Mapping) -> int:
    """Classes of the dataset the params prepare (the latency table's classifier)."""
    data = config["data"]
    if data["source"] == "synth":
        return data["synth"]["classes"]
    if data["source"] == "mnist":
        return 10
    return 100 if data["subset"] == "imagenet100" else 1000


def eval_flags(evaluation: Mapping) -> str:
    """The evaluation flags every command that evaluates a network takes (``train.eval``)."""
    flags = f"--calib-images {evaluation['calib_images']} --eval-batch {evaluation['batch_size']}"
    if evaluation["val_images"]:
        flags += f" --val-images {evaluation['val_images']}"
    return flags


def measure_device_flags(device: str, environ: Mapping[str, str] = os.environ) -> str:
    """``--device D`` for a local device, ``--remote HOST:PORT --token-file F`` for a dwnas agent
    (``remote:HOST:PORT``; the token from ``DWNAS_AGENT_TOKEN_FILE``, else ``~/.dwnas``)."""
    if device.startswith("remote:"):
        token = environ.get("DWNAS_AGENT_TOKEN_FILE", os.path.expanduser("~/.dwnas/agent.token"))
        return f"--remote {device.removeprefix('remote:')} --token-file {token}"
    return f"--device {device}"


def summary_resolution(summary: str | os.PathLike) -> int:
    """The resolution a network was exported at: its ``transform.json``'s ``resolution``."""
    return json.loads(Path(summary).read_text())["resolution"]


def compared_models(
    deep: str, shallow: str, deep_only: str | None = None, deep_only_summary: str | None = None
) -> str:
    """``deep=F shallow=F [deep-only=F@RES]``: deep-only's network runs at its own resolution
    (read from its ``transform.json``)."""
    models = [f"deep={deep}", f"shallow={shallow}"]
    if deep_only is not None:
        models.append(f"deep-only={deep_only}@{summary_resolution(deep_only_summary)}")
    return " ".join(models)


# Snakemake's `priority:` of the rules whose order decides the run's length on a small machine
# (docs/pipeline.md, "Jobs side by side"). Jobs that take every core come first, while no
# single-thread job holds a core: a whole-machine job cannot start beside one, so a free core
# would idle until that job ends. Then the side-by-side trainings, longest first on the default
# params, so that none of them is left running alone at the end. Snakemake's scheduler maximises
# the *sum* of the priorities of the jobs it starts together, so a whole-machine job outranks any
# set of side-by-side ones by orders of magnitude (at 5 against 3 + 2, the supernet waited while
# MobileNetV2 and ODN ran). Rules not named here keep 0, `measure` among them: it takes every
# core too, but each of its jobs waits for a training and they run last, together.
SCHEDULE_PRIORITY = {
    "profile": 1200,  # the budget check precedes training
    "train_supernet": 1100,  # the longest chain
    "train_elastic": 1100,
    "baseline_hurricane_supernet": 1000,  # whole-machine: times its operators
    "baseline_mobilenetv2": 3,
    "baseline_odn": 2,
    "baseline_hurricane": 1,
}


def side_by_side_threads(cores: int | None) -> int:
    """Threads of a job that shares the machine with one other: half of ``cores``, at least 1.

    The compared methods' trainings run two at a time with these: on a 2-core CPU two
    single-thread trainings get through about 9% more images per second than one two-thread
    training, and the single-threaded parts of a job (imports, exports, evaluation set-up) overlap
    instead of queueing (docs/pipeline.md, "Jobs side by side")."""
    return max(1, (cores or 1) // 2)


def gpu_processes(config: Mapping) -> dict[str, int]:
    """Rule -> the processes the params run it with (``nproc``), for :func:`check_granted_gpus`."""
    train, mobilenetv2 = config["train"], config["baselines"]["mobilenetv2"]
    return {
        "train_supernet": train["supernet"]["nproc"],
        "train_elastic": train["elastic"]["nproc"],
        "baseline_mobilenetv2": mobilenetv2["recipe"]["nproc"],
    }


def check_granted_gpus(nproc: Mapping[str, int], granted: Mapping[str, Mapping]) -> None:
    """A profile grants resources, params decide what a rule computes: a rule's GPU count
    (``gpu``, from ``--set-resources`` / a profile's ``set-resources``) must equal the params'
    ``nproc`` it runs with, else a cluster profile would silently change the results (issue 14).

    ``gpu: 0`` is the one other grant: no GPUs, so the params' nproc processes run on the job's
    CPUs (gloo), as on a CPU-only cluster (``profiles/slurm-local``); the processes, and so the
    results, still come from the params.

    ``nproc``: rule name -> the params' nproc; ``granted``: rule name -> resource overrides.
    """
    problems = []
    for rule, want in sorted(nproc.items()):
        value = (granted.get(rule) or {}).get("gpu")
        value = getattr(value, "value", value)  # snakemake's Resource, or a plain value
        if value is None:
            continue
        try:
            value = int(value)
        except (TypeError, ValueError):
            problems.append(f"set-resources {rule}: gpu={value!r} is not a number")
            continue
        if value != want and value != 0:
            problems.append(
                f"set-resources {rule}: gpu={value} but the params run it with nproc {want}; "
                f"a profile grants resources, the params file decides the processes (set nproc "
                f"there, drop gpu from the profile, or grant gpu: 0 to run them on CPUs)"
            )
    if problems:
        raise DwnasError("; ".join(problems))


# Layout ----------------------------------------------------------------------------------------


class Layout:
    """Where each stage's files are for one params file (``results/<name>/...``), and the input
    functions that need it. Input functions take Snakemake's ``wildcards`` (any object with the
    wildcard names as attributes)."""

    def __init__(self, config: Mapping):
        from dwnas.baselines.mobilenetv2 import variant_label
        from dwnas.measure.settings import RUNTIME_FORMATS
        from dwnas.search.budgets import budget_labels

        self.config = config
        self.results = f"results/{config['name']}"
        self.modes = list(MODES)
        self.budgets = budget_labels(config["search"]["budgets"])
        self.runtimes = list(config["measure"]["runtimes"])
        self.devices = list(config["measure"]["devices"])
        self.formats = {runtime: RUNTIME_FORMATS[runtime] for runtime in self.runtimes}
        profile = config["profile"]
        self.profile_device, self.profile_runtime = profile["device"], profile["runtime"]
        self.profile_dir = f"{self.results}/profile/{self.profile_device}/{{runtime}}"
        # the table the search (and HURRICANE) use: profile.runtime's
        self.search_lut = (
            f"{self.results}/profile/{self.profile_device}/{self.profile_runtime}/lut.json"
        )
        baselines = config["baselines"]
        mobilenetv2 = baselines["mobilenetv2"]
        self.baseline_variants = {
            "mobilenetv2": [
                variant_label(w, r)
                for w in mobilenetv2["widths"]
                for r in mobilenetv2["resolutions"]
            ],
            "depthshrinker": list(self.budgets),
            "hurricane": list(self.budgets),
            "odn": list(baselines["odn"]["backbones"]),
        }

    # data --------------------------------------------------------------------------------------
    @property
    def generated_data(self) -> bool:
        """Whether the raw tree is made by the pipeline (synth, mnist) or the user's (ImageNet)."""
        return self.config["data"]["source"] in GENERATED_SOURCES

    @property
    def raw_tree(self) -> str:
        """Where ``data prepare`` reads from: the generated tree, or the user's ImageNet root."""
        data = self.config["data"]
        return f"{self.results}/data/{data['source']}" if self.generated_data else data["root"]

    # measurement -------------------------------------------------------------------------------
    def measured_rows(self, folder: str) -> list[str]:
        """``<folder>/<device>/<runtime>.json`` for every device and runtime it can run: a remote
        agent measures ONNX files only (it runs TensorRT / onnxruntime on the board)."""
        return [
            f"{folder}/{device}/{runtime}.json"
            for device in self.devices
            for runtime in self.runtimes
            if not device.startswith("remote:") or runtime == "onnxruntime"
        ]

    @property
    def searched_measures(self) -> list[str]:
        """Every measurement of a searched network (mode x budget x device x runtime)."""
        return [
            path
            for mode in self.modes
            for budget in self.budgets
            for path in self.measured_rows(f"{self.results}/measure/{mode}/{budget}")
        ]

    @property
    def baseline_measures(self) -> list[str]:
        """Every measurement of a baseline (method x variant x device x runtime)."""
        return [
            path
            for method, variants in self.baseline_variants.items()
            for variant in variants
            for path in self.measured_rows(f"{self.results}/measure/{method}/{variant}")
        ]

    def deploy_files(self, folder: str) -> dict[str, str]:
        """``{form}_{runtime}`` -> ``<folder>/<form>.<format>``: the files a transform (or a
        baseline) exports, deep and shallow, for every measured runtime."""
        return {
            f"{form}_{runtime}": f"{folder}/{form}.{self.formats[runtime]}"
            for form in ("deep", "shallow")
            for runtime in self.runtimes
        }

    def compared(self, wildcards) -> dict[str, str]:
        """The files of one row in one runtime: a searched architecture's transform (mode
        double-win / deep-only) or a baseline's output (mode = the method, budget = its variant);
        Double-Win's row adds deep-only's network at the same budget, and a row on the profiled
        device the latency table (its canary is the drift reference)."""
        kind = "transform" if wildcards.mode in self.modes else "baselines"
        folder = f"{self.results}/{kind}/{wildcards.mode}/{wildcards.budget}"
        suffix = self.formats[wildcards.runtime]
        files = {
            "deep": f"{folder}/deep.{suffix}",
            "shallow": f"{folder}/shallow.{suffix}",
            "summary": f"{folder}/transform.json",
        }
        if wildcards.mode == "double-win":
            deep_only = f"{self.results}/transform/deep-only/{wildcards.budget}"
            files["deep_only"] = f"{deep_only}/deep.{suffix}"
            files["deep_only_summary"] = f"{deep_only}/transform.json"
        if wildcards.device == self.profile_device:
            files["lut"] = f"{self.results}/profile/{wildcards.device}/{wildcards.runtime}/lut.json"
        return files

    @staticmethod
    def compared_models(wildcards, input) -> str:
        """:func:`compared_models` of a measure job's inputs (:meth:`compared`)."""
        # a Namedlist: `in` would look for a file among the values, not a name
        if "deep_only" in input.keys():  # noqa: SIM118
            return compared_models(
                input.deep, input.shallow, input.deep_only, input.deep_only_summary
            )
        return compared_models(input.deep, input.shallow)

    @staticmethod
    def row_resolution(wildcards, input) -> int:
        """The resolution a measure job times its row at: the row's ``transform.json``'s."""
        return summary_resolution(input.summary)

    @staticmethod
    def measure_device(wildcards) -> str:
        """:func:`measure_device_flags` of a measure job's ``device`` wildcard."""
        return measure_device_flags(wildcards.device)

    # profile and search ------------------------------------------------------------------------
    def budget_check_flags(self, wildcards) -> str:
        """``--budgets JSON --modes M,M`` for the table the search uses (profile.runtime's): the
        profile checks the budgets against it, so an infeasible one stops the run before
        training; the other runtimes' tables check nothing."""
        if wildcards.runtime != self.profile_runtime:
            return ""
        budgets = shlex.quote(as_json(self.config["search"]["budgets"]))
        return f"--budgets {budgets} --modes {','.join(self.modes)}"

    def deep_only_picks(self, wildcards) -> list[str]:
        """Double-Win's space contains deep-only's: its search also weighs deep-only's picks."""
        if wildcards.mode != "double-win":
            return []
        return [f"{self.results}/search/deep-only/arch/{budget}.json" for budget in self.budgets]

    # baselines ---------------------------------------------------------------------------------
    def baseline_outputs(self, method: str) -> dict[str, str]:
        """A baseline's outputs under ``baselines/<method>/{variant}``: its summary, its
        transform.json and its deploy files."""
        out = f"{self.results}/baselines/{method}/{{variant}}"
        return {
            "summary": f"{out}/summary.json",
            "transform": f"{out}/transform.json",
            **self.deploy_files(out),
        }

    def variants_pattern(self, method: str) -> str:
        """The ``variant`` wildcard's constraint for ``method``: exactly its variants."""
        return "|".join(re.escape(v) for v in self.baseline_variants[method])

    def trained(self, *methods: str) -> list[str]:
        """The ``transform.json`` of every variant of ``methods`` (a DVC stage's target)."""
        return [
            f"{self.results}/baselines/{method}/{variant}/transform.json"
            for method in methods
            for variant in self.baseline_variants[method]
        ]

    def odn_start_depth(self, wildcards) -> int:
        """The depth ODN's growth of backbone ``wildcards.variant`` starts from: params
        ``baselines.odn.start_depth``, one number for all backbones or one per backbone."""
        start = self.config["baselines"]["odn"]["start_depth"]
        return start[wildcards.variant] if isinstance(start, Mapping) else start

    def odn_space_flag(self, wildcards) -> str:
        """ODN's MBConv backbone is built in the params' space; its ResNet backbone needs none."""
        if wildcards.variant != "mbconv":
            return ""
        return f"--space {shlex.quote(as_json(self.config['space']))}"
