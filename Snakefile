# dwnas pipeline: data -> supernet -> elastic -> profile/search -> transform -> measure -> report.
# Thin by design: every rule's shell line is one `dwnas` command, every config value reaches a rule
# through `params:`, and all logic lives (and is tested) in the dwnas package.
#
#   snakemake --cores all                                  # embedded default params
#   snakemake --cores all --configfile params/smoke.yaml   # any other params file
import os
from pathlib import Path

from dwnas.config import params_hash, validate_params


configfile: "params/default.yaml"


validate_params(config, " + ".join(str(p) for p in workflow.overwrite_configfiles) or "params/default.yaml")

NAME = config["name"]
R = f"results/{NAME}"
os.environ["DWNAS_EXPERIMENT"] = f"dwnas-{NAME}"
os.environ["DWNAS_PARAMS_HASH"] = params_hash(config)


def package_code(*parts):
    """The package sources a rule runs, declared as inputs so that editing them re-runs it."""
    files = []
    for part in parts:
        path = Path("dwnas", part)
        files += sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path)]
    return files


include: "workflow/rules/data.smk"


rule all:
    input:
        f"{R}/data/prepared",
