# The compared methods (docs/methods.md): each writes its weights, deploy files per runtime and
# transform.json under baselines/<method>/<variant>/; the `measure` rule times them exactly as it
# times Double-Win's networks, and each logs the report's row (stage baseline_<method>).
# Deep-only NAS is the `search` rule with mode=deep-only.
from dwnas.baselines.mobilenetv2 import parse_variant

MNV2 = BASELINES["mobilenetv2"]
SHRINK = BASELINES["depthshrinker"]
HURRICANE = BASELINES["hurricane"]
ODN = BASELINES["odn"]
SEARCH_RATIOS = {k: SEARCH[k] for k in ("parent_ratio", "mutation_ratio", "mutate_prob",
                                         "mutate_resolution_prob", "max_tries")}


rule baseline_mobilenetv2:
    output:
        **LAYOUT.baseline_outputs("mobilenetv2"),
    input:
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        variant=LAYOUT.variants_pattern("mobilenetv2"),
    params:
        code=CODE["baselines"],
        out=f"{R}/baselines/mobilenetv2/{{variant}}",
        width=lambda wildcards: parse_variant(wildcards.variant)[0],
        resolution=lambda wildcards: parse_variant(wildcards.variant)[1],
        recipe=as_json(MNV2["recipe"]),
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        runtimes=" ".join(RUNTIMES),
        nproc=MNV2["recipe"]["nproc"],
    threads: SIDE_BY_SIDE
    priority: SCHEDULE_PRIORITY["baseline_mobilenetv2"]
    resources:
        gpu=MNV2["recipe"]["nproc"],  # granted to the job; the processes come from params
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/baseline_mobilenetv2_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_mobilenetv2_{{variant}}.tsv"
    shell:
        "dwnas baseline mobilenetv2 --prepared {input.prepared} --width {params.width}"
        " --resolution {params.resolution} --recipe {params.recipe:q} --seed {params.seed}"
        " --workers {params.workers} {params.eval} --runtimes {params.runtimes} --nproc {params.nproc} --out {params.out}"
        " > {log} 2>&1"


rule baseline_depthshrinker:
    output:
        **LAYOUT.baseline_outputs("depthshrinker"),
    input:
        ckpt=f"{R}/elastic/elastic.pt",
        arch=f"{R}/search/deep-only/arch/{{variant}}.json",
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        variant=LAYOUT.variants_pattern("depthshrinker"),
    params:
        code=CODE["baselines"],
        out=f"{R}/baselines/depthshrinker/{{variant}}",
        fraction=SHRINK["linear_fraction"],
        recipe=as_json(SHRINK["recipe"]),
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        runtimes=" ".join(RUNTIMES),
    threads: SIDE_BY_SIDE
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/baseline_depthshrinker_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_depthshrinker_{{variant}}.tsv"
    shell:
        "dwnas baseline depthshrinker --prepared {input.prepared} --checkpoint {input.ckpt}"
        " --arch {input.arch} --budget {wildcards.variant} --linear-fraction {params.fraction}"
        " --recipe {params.recipe:q} --seed {params.seed} --workers {params.workers} {params.eval} --runtimes {params.runtimes}"
        " --out {params.out} > {log} 2>&1"


HURRICANE_SUPERNET_KEYS = ("kinds", "kernels", "expands", "se", "keep_ops", "late_stages",
                           "resolution", "recipe")
HURRICANE_SEARCH_KEYS = ("population", "generations", "stage2_epochs", "finetune_epochs", "recipe")


rule baseline_hurricane_supernet:
    output:
        ckpt=f"{R}/baselines/hurricane/supernet/supernet.pt",
        ops=f"{R}/baselines/hurricane/supernet/ops.json",
        summary=f"{R}/baselines/hurricane/supernet/summary.json",
    input:
        prepared=f"{R}/data/prepared",
    params:
        code=CODE["baselines"],
        out=lambda wildcards, output: os.path.dirname(output.summary),
        space=as_json(config["space"]),
        settings=as_json({k: HURRICANE[k] for k in HURRICANE_SUPERNET_KEYS}),
        device=PROFILE["device"],
        timing=as_json({k: PROFILE[k] for k in ("warmup", "iters", "threads", "statistic", "runtime")}),
        seed=config["seed"],
        workers=config["data"]["workers"],
    threads: workflow.cores  # operators are timed: no other job competes for the CPU
    priority: SCHEDULE_PRIORITY["baseline_hurricane_supernet"]
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/baseline_hurricane_supernet.log",
    benchmark:
        f"{R}/benchmarks/baseline_hurricane_supernet.tsv"
    shell:
        "dwnas baseline hurricane supernet --prepared {input.prepared} --space {params.space:q}"
        " --settings {params.settings:q} --device {params.device} --measure-settings {params.timing:q}"
        " --seed {params.seed} --workers {params.workers} --out {params.out} > {log} 2>&1"


rule baseline_hurricane:
    output:
        **LAYOUT.baseline_outputs("hurricane"),
    input:
        supernet=rules.baseline_hurricane_supernet.output.ckpt,
        lut=SEARCH_LUT,
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        variant=LAYOUT.variants_pattern("hurricane"),
    params:
        code=CODE["baselines"],
        out=f"{R}/baselines/hurricane/{{variant}}",
        budgets=as_json(SEARCH["budgets"]),
        settings=as_json({k: HURRICANE[k] for k in HURRICANE_SEARCH_KEYS}),
        ratios=as_json(SEARCH_RATIOS),
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        runtimes=" ".join(RUNTIMES),
    threads: SIDE_BY_SIDE
    priority: SCHEDULE_PRIORITY["baseline_hurricane"]
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/baseline_hurricane_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_hurricane_{{variant}}.tsv"
    shell:
        "dwnas baseline hurricane search --prepared {input.prepared} --supernet {input.supernet}"
        " --lut {input.lut} --budgets {params.budgets:q} --budget {wildcards.variant}"
        " --settings {params.settings:q} --search-settings {params.ratios:q} --seed {params.seed}"
        " --workers {params.workers} {params.eval} --runtimes {params.runtimes} --out {params.out} > {log} 2>&1"


rule baseline_odn:
    output:
        **LAYOUT.baseline_outputs("odn"),
    input:
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        variant=LAYOUT.variants_pattern("odn"),
    params:
        code=CODE["baselines"],
        out=f"{R}/baselines/odn/{{variant}}",
        space=LAYOUT.odn_space_flag,
        width=ODN["resnet_width"],
        resolution=ODN["resolution"],
        start=LAYOUT.odn_start_depth,
        criterion=as_json({k: ODN[k] for k in ("target_top1", "min_delta",
                                                   "max_rounds_per_depth", "max_epochs")}),
        recipe=as_json(ODN["recipe"]),
        seed=config["seed"],
        workers=config["data"]["workers"],
        eval=EVAL_FLAGS,
        runtimes=" ".join(RUNTIMES),
    threads: SIDE_BY_SIDE
    priority: SCHEDULE_PRIORITY["baseline_odn"]
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/baseline_odn_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_odn_{{variant}}.tsv"
    shell:
        "dwnas baseline odn --prepared {input.prepared} --backbone {wildcards.variant} {params.space}"
        " --resnet-width {params.width} --resolution {params.resolution} --start-depth {params.start}"
        " --criterion {params.criterion:q} --recipe {params.recipe:q} --seed {params.seed}"
        " --workers {params.workers} {params.eval} --runtimes {params.runtimes} --out {params.out} > {log} 2>&1"
