# The equivalent deep -> shallow transform of every searched architecture: recalibrated, verified,
# exported for every runtime and evaluated from the files (measure.smk times them).


rule transform:
    output:
        **LAYOUT.deploy_files(f"{R}/transform/{{mode}}/{{budget}}"),
        summary=f"{R}/transform/{{mode}}/{{budget}}/transform.json",
    input:
        arch=f"{R}/search/{{mode}}/arch/{{budget}}.json",
        ckpt=f"{R}/elastic/elastic.pt",
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        mode="|".join(MODES),
    params:
        code=CODE["transform"],
        out=f"{R}/transform/{{mode}}/{{budget}}",
        params_file=PARAMS_FILE,
        runtimes=" ".join(RUNTIMES),
        seed=config["seed"],
        eval=EVAL_FLAGS,
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/transform_{{mode}}_{{budget}}.log",
    benchmark:
        f"{R}/benchmarks/transform_{{mode}}_{{budget}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} --tag budget={wildcards.budget} transform --arch {input.arch}"
        " --checkpoint {input.ckpt} --prepared {input.prepared} --params {params.params_file}"
        " --runtimes {params.runtimes} --seed {params.seed} {params.eval} --out {params.out} > {log} 2>&1"
