# dwnas pipeline: data -> supernet -> elastic -> profile/search -> transform -> measure -> report.
# Thin by design: every rule's shell line is one `dwnas` command, every config value reaches a rule
# through `params:`, and all logic lives (and is tested) in the dwnas package (dwnas.workflow for
# what the rules derive from the params). workflow/rules/common.smk holds the names the rule files
# share; it is included first, and the rule files (one per stage) in any order after it.
#
#   snakemake --cores all                                  # embedded default params
#   snakemake --cores all --configfile params/smoke.yaml   # any other params file
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dwnas import track
from dwnas.config import check_all
from dwnas.errors import DwnasError
from dwnas.workflow import check_granted_gpus, gpu_processes, relative


if not workflow.overwrite_configfiles:  # --configfile replaces the default, never merges into it

    configfile: str(Path(workflow.basedir, "params/default.yaml"))


# relative to the working directory: nothing a rule records names the checkout's location
PARAMS_FILE = relative(
    workflow.overwrite_configfiles[-1]
    if workflow.overwrite_configfiles
    else Path(workflow.basedir, "params/default.yaml")
)
try:  # bad params stop the run before any rule starts, with the key path named
    check_all(config, PARAMS_FILE)
except DwnasError as exc:
    raise WorkflowError(str(exc)) from None
try:  # a profile grants resources; it never changes how many processes a rule runs
    check_granted_gpus(gpu_processes(config), workflow.resource_settings.overwrite_resources)
except DwnasError as exc:
    raise WorkflowError(f"error: {exc}") from None

track.pipeline_environment(config["name"], config)  # the experiment and params hash every stage logs under


onstart:
    track.pipeline_started(config, PARAMS_FILE)


onsuccess:
    track.pipeline_ended("FINISHED")


onerror:
    track.pipeline_ended("FAILED")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/transform.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report=f"{R}/report/summary.json",
        measures=MEASURES,
        baselines=BASELINE_MEASURES,
    default_target: True


# Targets of the DVC stages (dvc.yaml): each stage asks for one of these.
localrules: profiled, static_baselines, searched_baselines, transformed_searches, measured


rule profiled:  # a latency table per measured runtime
    input:
        expand(f"{PROFILE_DIR}/lut.json", runtime=RUNTIMES),


rule static_baselines:  # fixed architectures, trained from scratch
    input:
        LAYOUT.trained(*STATIC_BASELINES),


rule searched_baselines:  # architectures found by a search (DepthShrinker: deep-only's)
    input:
        LAYOUT.trained(*SEARCHED_BASELINES),


rule transformed_searches:
    input:
        expand(f"{R}/transform/{{mode}}/{{budget}}/transform.json", mode=MODES, budget=BUDGETS),


rule measured:
    input:
        MEASURES,
        BASELINE_MEASURES,
