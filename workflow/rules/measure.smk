# Measurement: the deep, shallow and (Double-Win) deep-only files of a row timed side by side in one
# process (`dwnas compare`), per device and runtime, by the same code for every method: the
# searched networks' transforms (transform.smk) and the baselines' files (baselines.smk).


rule measure:
    output:
        f"{R}/measure/{{mode}}/{{budget}}/{{device}}/{{runtime}}.json",
    input:
        unpack(LAYOUT.compared),
    wildcard_constraints:
        runtime="|".join(RUNTIMES),
    params:
        code=CODE["measure"],
        device=LAYOUT.measure_device,
        models=LAYOUT.compared_models,
        resolution=LAYOUT.row_resolution,
        batch=MEASURE["batch"],
        throughput=(f"--throughput-batch {MEASURE['throughput_batch']}"
                    if MEASURE["throughput_batch"] else ""),
        warmup=MEASURE["warmup"],
        iters=MEASURE["iters"],
        rounds=MEASURE["rounds"],
        round_iters=MEASURE["round_iters"],
        statistic=MEASURE["statistic"],
        threads=f"--threads {MEASURE['threads']}" if MEASURE["threads"] else "",
        canary=lambda wildcards, input: f"--canary {input.lut}" if "lut" in input.keys() else "",
    threads: workflow.cores  # timing runs alone: no other job competes for the CPU
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/measure_{{mode}}_{{budget}}_{{device}}_{{runtime}}.log",
    benchmark:
        f"{R}/benchmarks/measure_{{mode}}_{{budget}}_{{device}}_{{runtime}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} --tag budget={wildcards.budget} --tag device={wildcards.device}"
        " --tag runtime={wildcards.runtime} compare --model {params.models} --resolution {params.resolution}"
        " {params.device} --batch {params.batch} {params.throughput} --warmup {params.warmup}"
        " --iters {params.iters} --rounds {params.rounds} --round-iters {params.round_iters}"
        " --statistic {params.statistic} {params.threads} {params.canary} --out {output} > {log} 2>&1"
