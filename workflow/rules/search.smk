# Hardware-aware search: the device latency tables (one per runtime), then evolutionary search in
# deep-only mode (every block non-linear, the Once-for-All way) and Double-Win mode (budget on the
# shallow form; deep-only's picks compete with its finalists, since its space contains them).
import json
import shlex

from dwnas.search.budgets import budget_labels

PROFILE = config["profile"]
SEARCH = config["search"]
MODES = ["double-win", "deep-only"]
BUDGETS = budget_labels(SEARCH["budgets"])
SEARCH_SETTINGS = {k: v for k, v in SEARCH.items() if k != "budgets"}
NUM_CLASSES = {"synth": config["data"]["synth"]["classes"], "mnist": 10}.get(
    config["data"]["source"], 100 if config["data"]["subset"] == "imagenet100" else 1000)


RUNTIMES = config["measure"]["runtimes"]
PROFILE_DIR = f"{R}/profile/{PROFILE['device']}/{{runtime}}"
SEARCH_LUT = f"{R}/profile/{PROFILE['device']}/{PROFILE['runtime']}/lut.json"


rule profile:  # one latency table per measured runtime; the search uses profile.runtime's
    output:
        lut=f"{PROFILE_DIR}/lut.json",
        fidelity=f"{PROFILE_DIR}/lut_fidelity.json",
        plot=f"{PROFILE_DIR}/lut_fidelity.png",
        summary=f"{PROFILE_DIR}/summary.json",
    input:
    wildcard_constraints:
        runtime="|".join(RUNTIMES),
    params:
        code=package_code("search", "nn", "transform", "measure", "space.py"),
        out=PROFILE_DIR,
        space=as_json(config["space"]),
        device=PROFILE["device"],
        grid=",".join(str(r) for r in PROFILE["grid"]),
        classes=NUM_CLASSES,
        settings=as_json({k: PROFILE[k] for k in ("warmup", "iters", "threads")}),
        statistic=PROFILE["statistic"],
        archs=PROFILE["fidelity_archs"],
        calibration=PROFILE["calibration_archs"],
        seed=config["seed"],
        estimator=(f"--rounds {config['measure']['rounds']} --round-iters "
                   f"{config['measure']['round_iters']} --round-statistic {config['measure']['statistic']}"),
        # the search's table checks the budgets: an infeasible one stops the run before training
        budgets=lambda wildcards: (f"--budgets {shlex.quote(as_json(SEARCH['budgets']))} --modes {','.join(MODES)}"
                                   if wildcards.runtime == PROFILE["runtime"] else ""),
    threads: workflow.cores  # timing runs alone: no other job competes for the CPU
    priority: 10  # first of the jobs ready at the start, so the budget check precedes training
    log:
        f"{R}/logs/profile_{PROFILE['device']}_{{runtime}}.log",
    benchmark:
        f"{R}/benchmarks/profile_{PROFILE['device']}_{{runtime}}.tsv"
    shell:
        "dwnas profile --space {params.space:q} --device {params.device} --runtime {wildcards.runtime}"
        " --grid {params.grid} --num-classes {params.classes} --settings {params.settings:q}"
        " --statistic {params.statistic} --calibration-archs {params.calibration}"
        " --fidelity-archs {params.archs} {params.estimator} {params.budgets} --seed {params.seed}"
        " --out {params.out} > {log} 2>&1"


def deep_only_picks(wildcards):
    """Double-Win's space contains deep-only's: its search also weighs deep-only's picks."""
    if wildcards.mode != "double-win":
        return []
    return expand(f"{R}/search/deep-only/arch/{{budget}}.json", budget=BUDGETS)


rule search:
    output:
        pareto=f"{R}/search/{{mode}}/pareto.csv",
        evaluated=f"{R}/search/{{mode}}/evaluated.csv",
        summary=f"{R}/search/{{mode}}/summary.json",
        archs=expand(f"{R}/search/{{{{mode}}}}/arch/{{budget}}.json", budget=BUDGETS),
    input:
        ckpt=f"{R}/elastic/elastic.pt",
        prepared=f"{R}/data/prepared",
        lut=SEARCH_LUT,
        include=deep_only_picks,
    wildcard_constraints:
        mode="|".join(MODES),
    params:
        code=package_code("search", "train/evaluate.py", "nn", "space.py"),
        out=f"{R}/search/{{mode}}",
        device=PROFILE["device"],
        runtime=PROFILE["runtime"],
        include=lambda wildcards, input: (f"--include {R}/search/deep-only/arch"
                                          if input.include else ""),
        budgets=as_json(SEARCH["budgets"]),
        settings=as_json(SEARCH_SETTINGS),
        seed=config["seed"],
        eval=eval_flags(),
        cache=f"{R}/cache/search_{{mode}}.json",
    log:
        f"{R}/logs/search_{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/search_{{mode}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} search --checkpoint {input.ckpt} --prepared {input.prepared} --lut {input.lut}"
        " --device {params.device} --runtime {params.runtime} {params.include}"
        " --mode {wildcards.mode} --budgets {params.budgets:q}"
        " --settings {params.settings:q} --seed {params.seed} {params.eval}"
        " --cache {params.cache} --out {params.out} > {log} 2>&1"
