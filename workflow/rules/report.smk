# The paper's tables and figures, regenerated from the pipeline's own files (MLflow only for the
# training curves).


rule report:
    output:
        table=report(f"{R}/report/main_table.md", caption="../report/main_table.rst", category="Tables"),
        csv=f"{R}/report/main_table.csv",
        pareto=report(f"{R}/report/pareto.png", caption="../report/pareto.rst", category="Figures"),
        deep_vs_shallow=report(f"{R}/report/deep_vs_shallow.png", caption="../report/deep_vs_shallow.rst",
                               category="Figures"),
        resolution=report(f"{R}/report/accuracy_vs_resolution.png",
                          caption="../report/accuracy_vs_resolution.rst", category="Figures"),
        training=report(f"{R}/report/training_curves.png", caption="../report/training_curves.rst",
                        category="Figures"),
        fidelity=report(f"{R}/report/lut_fidelity.png", caption="../report/lut_fidelity.rst",
                        category="Figures"),
        merge=report(f"{R}/report/merge_gains.png", caption="../report/merge_gains.rst",
                     category="Figures"),
        fidelity_json=f"{R}/report/lut_fidelity_pipeline.json",
        summary=f"{R}/report/summary.json",
    input:
        measures=MEASURES,
        baselines=BASELINE_MEASURES,
        sweeps=expand(f"{R}/sweep/{{label}}.json", label=["non-elastic", "elastic"]),
        luts=expand(f"{PROFILE_DIR}/lut.json", runtime=RUNTIMES),
        fidelity=expand(f"{PROFILE_DIR}/lut_fidelity.json", runtime=RUNTIMES),
    params:
        code=CODE["report"],
        out=lambda wildcards, output: os.path.dirname(output.summary),
        experiment=f"dwnas-{NAME}",
        space=as_json(config["space"]),
        luts=lambda wildcards, input: " ".join(f"--lut {p}" for p in input.luts),
        fidelity=lambda wildcards, input: " ".join(f"--fidelity {p}" for p in input.fidelity),
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    shell:
        "dwnas report --experiment {params.experiment} --measured {input.measures} {input.baselines}"
        " --space {params.space:q} {params.luts} {params.fidelity}"
        " --sweep {input.sweeps[0]} --sweep {input.sweeps[1]} --out {params.out} > {log} 2>&1"
