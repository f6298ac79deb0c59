# Device latency tables: one per measured runtime (the measure stage's runtimes), each with its
# fidelity on random networks of the space. The search uses profile.runtime's table, whose budgets
# are checked here, before training.


rule profile:
    output:
        lut=f"{PROFILE_DIR}/lut.json",
        fidelity=f"{PROFILE_DIR}/lut_fidelity.json",
        plot=f"{PROFILE_DIR}/lut_fidelity.png",
        summary=f"{PROFILE_DIR}/summary.json",
    input:
    wildcard_constraints:
        runtime="|".join(RUNTIMES),
    params:
        code=CODE["profile"],
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
        estimator=(f"--rounds {MEASURE['rounds']} --round-iters "
                   f"{MEASURE['round_iters']} --round-statistic {MEASURE['statistic']}"),
        # the search's table checks the budgets: an infeasible one stops the run before training
        budgets=LAYOUT.budget_check_flags,
    threads: workflow.cores  # timing runs alone: no other job competes for the CPU
    priority: SCHEDULE_PRIORITY["profile"]
    conda:
        "../envs/dwnas.yaml"
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
