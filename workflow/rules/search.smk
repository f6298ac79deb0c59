# Hardware-aware evolutionary search on profile.runtime's latency table (profile.smk), in deep-only
# mode (every block non-linear, the Once-for-All way) and Double-Win mode (budget on the
# shallow form; deep-only's picks compete with its finalists, since its space contains them).


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
        include=LAYOUT.deep_only_picks,
    wildcard_constraints:
        mode="|".join(MODES),
    params:
        code=CODE["search"],
        out=f"{R}/search/{{mode}}",
        device=PROFILE["device"],
        runtime=PROFILE["runtime"],
        include=lambda wildcards, input: (f"--include {R}/search/deep-only/arch"
                                          if input.include else ""),
        budgets=as_json(SEARCH["budgets"]),
        settings=as_json({k: v for k, v in SEARCH.items() if k != "budgets"}),
        seed=config["seed"],
        eval=EVAL_FLAGS,
        cache=f"{R}/cache/search_{{mode}}.json",
    conda:
        "../envs/dwnas.yaml"
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
