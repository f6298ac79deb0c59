# dwnas pipeline: data -> supernet -> elastic -> profile/search -> transform -> measure -> report.
# Thin by design: every rule's shell line is one `dwnas` command, every config value reaches a rule
# through `params:`, and all logic lives (and is tested) in the dwnas package.
#
#   snakemake --cores all                                  # embedded default params
#   snakemake --cores all --configfile params/smoke.yaml   # any other params file
import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dwnas import track
from dwnas.config import check_all
from dwnas.errors import DwnasError
from dwnas.pipeline import check_granted_gpus, code_digest


if not workflow.overwrite_configfiles:  # --configfile replaces the default, never merges into it

    configfile: str(Path(workflow.basedir, "params/default.yaml"))


def here(path):
    """``path`` relative to the working directory: what Snakemake records (inputs, params) must not
    name the checkout's location, so a moved or re-cloned checkout re-runs nothing."""
    return os.path.relpath(path)


PARAMS_FILE = here(
    workflow.overwrite_configfiles[-1]
    if workflow.overwrite_configfiles
    else Path(workflow.basedir, "params/default.yaml")
)
try:  # bad params stop the run before any rule starts, with the key path named
    check_all(config, PARAMS_FILE)
except DwnasError as exc:
    raise WorkflowError(str(exc)) from None

NAME = config["name"]
R = f"results/{NAME}"
track.pipeline_environment(NAME, config)  # the experiment and params hash every stage logs under


onstart:
    track.pipeline_started(config, PARAMS_FILE)


onsuccess:
    track.pipeline_ended("FINISHED")


onerror:
    track.pipeline_ended("FAILED")


PACKAGE = Path(workflow.basedir, "dwnas")


def as_json(value):
    """A params section as a rule parameter: key order never counts as a change."""
    return json.dumps(value, sort_keys=True)


def package_code(*parts):
    """A rule's `code` param: the digest of the package sources it runs (found beside the
    Snakefile), so an edit to them re-runs it and what follows (Snakemake's params trigger), while
    a moved checkout, a fresh clone or a touched file re-runs nothing."""
    return code_digest(PACKAGE, parts)


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/transform.smk"
include: "workflow/rules/baselines.smk"


try:  # a profile grants resources; it never changes how many processes a rule runs
    check_granted_gpus({"train_supernet": TRAIN["supernet"]["nproc"],
                        "train_elastic": TRAIN["elastic"]["nproc"],
                        "baseline_mobilenetv2": MNV2["recipe"]["nproc"]},
                       workflow.resource_settings.overwrite_resources)
except DwnasError as exc:
    raise WorkflowError(f"error: {exc}") from None


rule all:
    input:
        report=f"{R}/report/summary.json",
        measures=[path for mode in MODES for budget in BUDGETS
                  for path in measured_rows(f"{R}/measure/{mode}/{budget}")],
        baselines=BASELINE_MEASURES,
    default_target: True


# Targets of the DVC stages (dvc.yaml): each stage asks for one of these.
localrules: profiled, static_baselines, searched_baselines, transformed_searches, measured


def trained(*methods):
    return [f"{R}/baselines/{method}/{variant}/transform.json"
            for method in methods for variant in BASELINE_VARIANTS[method]]


rule profiled:  # a latency table per measured runtime
    input:
        expand(rules.profile.output.lut, runtime=RUNTIMES),


rule static_baselines:  # fixed architectures, trained from scratch
    input:
        trained("mobilenetv2", "odn"),


rule searched_baselines:  # architectures found by a search (DepthShrinker: deep-only's)
    input:
        trained("depthshrinker", "hurricane"),


rule transformed_searches:
    input:
        expand(f"{R}/transform/{{mode}}/{{budget}}/transform.json", mode=MODES, budget=BUDGETS),


rule measured:
    input:
        rules.all.input.measures,
        rules.all.input.baselines,


include: "workflow/rules/report.smk"
