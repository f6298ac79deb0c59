# The equivalent deep -> shallow transform of every searched architecture (recalibrated, verified,
# exported for every runtime and evaluated from the files), then its measurement: the deep,
# shallow and (Double-Win) deep-only files of a row timed side by side in one process, per device
# and runtime, by the same code for every method.
from dwnas.measure.settings import RUNTIME_FORMATS

MEASURE = config["measure"]
DEVICES = MEASURE["devices"]


def measured_rows(folder):
    """``<folder>/<device>/<runtime>.json`` for every device and runtime it can run: a remote
    agent measures ONNX files only (it runs TensorRT / onnxruntime on the board)."""
    return [f"{folder}/{device}/{runtime}.json" for device in DEVICES for runtime in RUNTIMES
            if not device.startswith("remote:") or runtime == "onnxruntime"]


def deploy_files(folder):
    return {f"{form}_{runtime}": f"{folder}/{form}.{RUNTIME_FORMATS[runtime]}"
            for form in ("deep", "shallow") for runtime in RUNTIMES}


rule transform:
    output:
        **deploy_files(f"{R}/transform/{{mode}}/{{budget}}"),
        summary=f"{R}/transform/{{mode}}/{{budget}}/transform.json",
    input:
        arch=f"{R}/search/{{mode}}/arch/{{budget}}.json",
        ckpt=f"{R}/elastic/elastic.pt",
        prepared=f"{R}/data/prepared",
    wildcard_constraints:
        mode="|".join(MODES),
    params:
        code=package_code("transform", "nn", "space.py", "train/evaluate.py", "measure/models.py"),
        out=f"{R}/transform/{{mode}}/{{budget}}",
        params_file=PARAMS_FILE,
        runtimes=" ".join(RUNTIMES),
        seed=config["seed"],
        eval=eval_flags(),
    log:
        f"{R}/logs/transform_{{mode}}_{{budget}}.log",
    benchmark:
        f"{R}/benchmarks/transform_{{mode}}_{{budget}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} --tag budget={wildcards.budget} transform --arch {input.arch}"
        " --checkpoint {input.ckpt} --prepared {input.prepared} --params {params.params_file}"
        " --runtimes {params.runtimes} --seed {params.seed} {params.eval} --out {params.out} > {log} 2>&1"


def measure_device_flags(wildcards):
    """``--device D`` for a local device, ``--remote HOST:PORT`` for a dwnas agent."""
    device = wildcards.device
    if device.startswith("remote:"):
        token = os.environ.get("DWNAS_AGENT_TOKEN_FILE", os.path.expanduser("~/.dwnas/agent.token"))
        return f"--remote {device.removeprefix('remote:')} --token-file {token}"
    return f"--device {device}"


def compared(wildcards):
    """The files of one row in one runtime: a searched architecture's transform (mode double-win /
    deep-only) or a baseline's output (mode = the method, budget = its variant); Double-Win's row
    adds deep-only's network at the same budget."""
    kind = "transform" if wildcards.mode in MODES else "baselines"
    folder = f"{R}/{kind}/{wildcards.mode}/{wildcards.budget}"
    suffix = RUNTIME_FORMATS[wildcards.runtime]
    files = {"deep": f"{folder}/deep.{suffix}", "shallow": f"{folder}/shallow.{suffix}",
             "summary": f"{folder}/transform.json"}
    if wildcards.mode == "double-win":
        files["deep_only"] = f"{R}/transform/deep-only/{wildcards.budget}/deep.{suffix}"
        files["deep_only_summary"] = f"{R}/transform/deep-only/{wildcards.budget}/transform.json"
    if wildcards.device == PROFILE["device"]:  # the table's drift reference joins the rounds
        files["lut"] = f"{R}/profile/{wildcards.device}/{wildcards.runtime}/lut.json"
    return files


def compared_models(wildcards, input):
    """``deep=F shallow=F [deep-only=F@RES]``: deep-only's network runs at its own resolution."""
    models = [f"deep={input.deep}", f"shallow={input.shallow}"]
    if "deep_only" in input.keys():
        size = json.loads(Path(input.deep_only_summary).read_text())["resolution"]
        models.append(f"deep-only={input.deep_only}@{size}")
    return " ".join(models)


rule measure:
    output:
        f"{R}/measure/{{mode}}/{{budget}}/{{device}}/{{runtime}}.json",
    input:
        unpack(compared),
    wildcard_constraints:
        runtime="|".join(RUNTIMES),
    params:
        code=package_code("measure"),
        device=measure_device_flags,
        models=compared_models,
        resolution=lambda wildcards, input: json.loads(Path(input.summary).read_text())["resolution"],
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
