# Hardware-aware search: the device latency table, then evolutionary search in Double-Win mode
# (budget on the shallow form) and deep-only mode (every block non-linear, the Once-for-All way).
import json

from dwnas.search.budgets import budget_labels

PROFILE = config["profile"]
SEARCH = config["search"]
MODES = ["double-win", "deep-only"]
BUDGETS = budget_labels(SEARCH["budgets"])
SEARCH_SETTINGS = {k: v for k, v in SEARCH.items() if k != "budgets"}
NUM_CLASSES = config["data"]["synth"]["classes"] if config["data"]["source"] == "synth" else (
    100 if config["data"]["subset"] == "imagenet100" else 1000)


rule profile:
    output:
        lut=f"{R}/profile/{PROFILE['device']}/lut.json",
        fidelity=f"{R}/profile/{PROFILE['device']}/lut_fidelity.json",
        plot=f"{R}/profile/{PROFILE['device']}/lut_fidelity.png",
        summary=f"{R}/profile/{PROFILE['device']}/summary.json",
    input:
        code=package_code("search", "nn", "transform", "measure", "space.py"),
    params:
        out=f"{R}/profile/{PROFILE['device']}",
        space=as_json(config["space"]),
        device=PROFILE["device"],
        grid=",".join(str(r) for r in PROFILE["grid"]),
        classes=NUM_CLASSES,
        settings=as_json({k: PROFILE[k] for k in ("warmup", "iters", "threads")}),
        statistic=PROFILE["statistic"],
        archs=PROFILE["fidelity_archs"],
        calibration=PROFILE["calibration_archs"],
        seed=config["seed"],
    threads: workflow.cores  # timing runs alone: no other job competes for the CPU
    log:
        f"{R}/logs/profile_{PROFILE['device']}.log",
    benchmark:
        f"{R}/benchmarks/profile_{PROFILE['device']}.tsv"
    shell:
        "dwnas profile --space {params.space:q} --device {params.device} --grid {params.grid}"
        " --num-classes {params.classes} --settings {params.settings:q} --statistic {params.statistic}"
        " --calibration-archs {params.calibration} --fidelity-archs {params.archs} --seed {params.seed} --out {params.out} > {log} 2>&1"


rule search:
    output:
        pareto=f"{R}/search/{{mode}}/pareto.csv",
        evaluated=f"{R}/search/{{mode}}/evaluated.csv",
        summary=f"{R}/search/{{mode}}/summary.json",
        archs=expand(f"{R}/search/{{{{mode}}}}/arch/{{budget}}.json", budget=BUDGETS),
    input:
        ckpt=f"{R}/elastic/elastic.pt",
        prepared=f"{R}/data/prepared",
        lut=rules.profile.output.lut,
        code=package_code("search", "train/evaluate.py", "nn", "space.py"),
    wildcard_constraints:
        mode="|".join(MODES),
    params:
        out=f"{R}/search/{{mode}}",
        device=PROFILE["device"],
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
        " --device {params.device} --mode {wildcards.mode} --budgets {params.budgets:q}"
        " --settings {params.settings:q} --seed {params.seed} {params.eval}"
        " --cache {params.cache} --out {params.out} > {log} 2>&1"
