# The equivalent deep -> shallow transform of every searched architecture, then its measurement
# (deep and shallow TorchScript, each device of the params) by the same code for every method.
MEASURE = config["measure"]
DEVICES = MEASURE["devices"]


rule transform:
    output:
        deep=f"{R}/transform/{{mode}}/{{budget}}/deep.pt",
        shallow=f"{R}/transform/{{mode}}/{{budget}}/shallow.pt",
        onnx=f"{R}/transform/{{mode}}/{{budget}}/shallow.onnx",
        summary=f"{R}/transform/{{mode}}/{{budget}}/transform.json",
    input:
        arch=f"{R}/search/{{mode}}/arch/{{budget}}.json",
        ckpt=f"{R}/elastic/elastic.pt",
        code=package_code("transform", "nn", "space.py"),
    params:
        out=f"{R}/transform/{{mode}}/{{budget}}",
        params_file=PARAMS_FILE,
    log:
        f"{R}/logs/transform_{{mode}}_{{budget}}.log",
    benchmark:
        f"{R}/benchmarks/transform_{{mode}}_{{budget}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} --tag budget={wildcards.budget} transform --arch {input.arch}"
        " --checkpoint {input.ckpt} --params {params.params_file} --out {params.out}"
        " > {log} 2>&1"


def measure_device_flags(wildcards):
    """``--device D`` for a local device, ``--remote HOST:PORT`` for a dwnas agent."""
    device = wildcards.device
    if device.startswith("remote:"):
        token = os.environ.get("DWNAS_AGENT_TOKEN_FILE", os.path.expanduser("~/.dwnas/agent.token"))
        return f"--remote {device.removeprefix('remote:')} --token-file {token}"
    return f"--device {device}"


def measured(wildcards):
    """The network to time and its transform.json: a searched architecture's transform (mode
    double-win / deep-only) or a baseline's output (mode = the method, budget = its variant)."""
    kind = "transform" if wildcards.mode in MODES else "baselines"
    folder = f"{R}/{kind}/{wildcards.mode}/{wildcards.budget}"
    return {"model": f"{folder}/{wildcards.form}.pt", "summary": f"{folder}/transform.json"}


rule measure:
    output:
        f"{R}/measure/{{mode}}/{{budget}}/{{device}}/{{form}}.json",
    input:
        unpack(measured),
        code=package_code("measure"),
    wildcard_constraints:
        form="deep|shallow",
    params:
        device=measure_device_flags,
        resolution=lambda wildcards, input: json.loads(Path(input.summary).read_text())["resolution"],
        batch=MEASURE["batch"],
        throughput=(f"--throughput-batch {MEASURE['throughput_batch']}"
                    if MEASURE["throughput_batch"] else ""),
        warmup=MEASURE["warmup"],
        iters=MEASURE["iters"],
        threads=f"--threads {MEASURE['threads']}" if MEASURE["threads"] else "",
    threads: workflow.cores  # timing runs alone: no other job competes for the CPU
    log:
        f"{R}/logs/measure_{{mode}}_{{budget}}_{{device}}_{{form}}.log",
    benchmark:
        f"{R}/benchmarks/measure_{{mode}}_{{budget}}_{{device}}_{{form}}.tsv"
    shell:
        "dwnas --tag method={wildcards.mode} --tag budget={wildcards.budget} --tag device={wildcards.device}"
        " --tag form={wildcards.form} measure --model {input.model} --resolution {params.resolution} {params.device}"
        " --batch {params.batch} {params.throughput} --warmup {params.warmup}"
        " --iters {params.iters} {params.threads} --out {output} > {log} 2>&1"
