# The paper's tables and figures, regenerated from MLflow (every stage's run) and the stages' JSON.


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
        summary=f"{R}/report/summary.json",
    input:
        measures=rules.all.input.measures,
        baselines=rules.all.input.baselines,
        sweeps=expand(f"{R}/sweep/{{label}}.json", label=["non-elastic", "elastic"]),
        fidelity=rules.profile.output.fidelity,
        code=package_code("report"),
    params:
        out=f"{R}/report",
        experiment=f"dwnas-{NAME}",
        statistic=MEASURE["statistic"],
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    shell:
        "dwnas report --experiment {params.experiment} --measured {input.measures} {input.baselines}"
        " --sweep {input.sweeps[0]} --sweep {input.sweeps[1]} --fidelity {input.fidelity}"
        " --latency-statistic {params.statistic}"
        " --out {params.out} > {log} 2>&1"
