# Training: hybrid transformable supernet training, then arbitrary-resolution elastic training,
# then accuracy-vs-resolution sweeps of both checkpoints (the report's elastic figure).


rule train_supernet:
    input:
        prepared=f"{R}/data/prepared",
    output:
        ckpt=f"{R}/supernet/supernet.pt",
        summary=f"{R}/supernet/summary.json",
    params:
        code=CODE["train"],
        recipe=as_json(TRAIN["supernet"]),
        space=as_json(config["space"]),
        resolution=TRAIN["supernet"]["resolution"],
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        nproc=TRAIN["supernet"]["nproc"],
    threads: workflow.cores
    priority: SCHEDULE_PRIORITY["train_supernet"]
    resources:
        gpu=TRAIN["supernet"]["nproc"],  # granted to the job; the processes come from params
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/train_supernet.log",
    benchmark:
        f"{R}/benchmarks/train_supernet.tsv"
    shell:
        "dwnas train supernet --prepared {input.prepared} --space {params.space:q}"
        " --recipe {params.recipe:q} --resolution {params.resolution} --seed {params.seed}"
        " --workers {params.workers} {params.eval} --nproc {params.nproc}"
        " --out {output.ckpt} --summary {output.summary} > {log} 2>&1"


# The elastic stage, and its control: the same recipe and epochs from the same supernet at the
# supernet's one resolution, so the accuracy-vs-resolution sweep compares checkpoints that have
# trained equally long (issue 12; docs/training.md).
CONTINUATION_RESOLUTIONS = {
    "elastic": (TRAIN["elastic"]["resolution"]["min"], TRAIN["elastic"]["resolution"]["max"]),
    "fixed": (TRAIN["supernet"]["resolution"], TRAIN["supernet"]["resolution"]),
}


rule train_elastic:
    input:
        prepared=f"{R}/data/prepared",
        init=f"{R}/supernet/supernet.pt",
    output:
        ckpt=f"{R}/{{kind}}/{{kind}}.pt",
        summary=f"{R}/{{kind}}/summary.json",
    wildcard_constraints:
        kind="elastic|fixed",
    params:
        code=CODE["train"],
        recipe=as_json(TRAIN["elastic"]),
        lo=lambda wildcards: CONTINUATION_RESOLUTIONS[wildcards.kind][0],
        hi=lambda wildcards: CONTINUATION_RESOLUTIONS[wildcards.kind][1],
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        nproc=TRAIN["elastic"]["nproc"],
    threads: workflow.cores
    priority: SCHEDULE_PRIORITY["train_elastic"]
    resources:
        gpu=TRAIN["elastic"]["nproc"],  # granted to the job; the processes come from params
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/train_{{kind}}.log",
    benchmark:
        f"{R}/benchmarks/train_{{kind}}.tsv"
    shell:
        "dwnas train elastic --prepared {input.prepared} --init {input.init}"
        " --recipe {params.recipe:q} --resolution-min {params.lo} --resolution-max {params.hi}"
        " --seed {params.seed} --workers {params.workers} {params.eval} --nproc {params.nproc}"
        " --out {output.ckpt} --summary {output.summary} > {log} 2>&1"


SWEEP_CHECKPOINTS = {"non-elastic": f"{R}/fixed/fixed.pt", "elastic": f"{R}/elastic/elastic.pt"}


rule train_sweep:
    input:
        ckpt=lambda wc: SWEEP_CHECKPOINTS[wc.label],
        prepared=f"{R}/data/prepared",
    output:
        f"{R}/sweep/{{label}}.json",
    wildcard_constraints:
        label="elastic|non-elastic",
    params:
        code=CODE["train"],
        resolutions="{}:{}:{}".format(
            TRAIN["elastic"]["resolution"]["min"],
            TRAIN["elastic"]["resolution"]["max"],
            TRAIN["eval"]["sweep_step"],
        ),
        seed=config["seed"],
        eval=EVAL_FLAGS,
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/train_sweep_{{label}}.log",
    benchmark:
        f"{R}/benchmarks/train_sweep_{{label}}.tsv"
    shell:
        "dwnas train sweep --checkpoint {input.ckpt} --prepared {input.prepared}"
        " --resolutions {params.resolutions} --label {wildcards.label} --seed {params.seed}"
        " {params.eval} --out {output} > {log} 2>&1"
