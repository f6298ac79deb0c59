"""Latency of the deep vs the shallow (transformed) network on this CPU; prints ONE JSON object.

Two sections.

``archs`` (eager PyTorch): architectures of params/imagenet.yaml's space at 224 px: (a)
``all_linear_k3``, every searchable block kernel 3, expand 6, linear, at MobileNetV2's depths
2-3-4-3-3-1 (MobileNetV2 with its searchable blocks linearised), and ``all_linear_k3_max_depth``,
the same at the space's maximum depths 4-4-4-4-4-1; (b) ``mixed``, a seeded sample of the space
(kernels 3-7, expands 3-6, linear and non-linear blocks) moved to 224 px. "deep" is the deep
network as deployed (BN folded, nothing merged, ``fold_deep``), "shallow" the transformed one;
both eager PyTorch under ``torch.inference_mode`` after warm-up, contiguous (NCHW) and
channels-last, at batch 1 and batch 32; the median over the timed iterations (deep and shallow
interleaved) is reported with the ratio deep / shallow, plus the verification error (random BN
statistics).

``vs_torchvision`` (compiled runtimes, batch 1, 224 px): three networks with the same stem, block
channels / strides / expands, 1280-channel head, pooling and dropout + linear classifier:
``torchvision``, ``torchvision.models.mobilenet_v2`` (eval, random BN statistics; BN folded by the
runtime, or by ``fold_bn`` for ``torch``); ``deep``, dwnas's MobileNetV2 (every block kernel 3, expand 6, non-linear) with
torchvision's very weights, BN folded by ``fold_deep``; ``shallow``, the same architecture with
every searchable block linear, ``transform`` ed (each block one dense 3x3 conv). Runtimes:
``torchscript`` (``torch.jit.trace`` + ``torch.jit.freeze``, which also folds torchvision's BN),
``torch`` (the pipeline's runtime: a ``torch.export`` program) and ``onnxruntime`` (``torch.onnx.export`` ``dynamo=False``, opset 17; CPU session,
``intra_op_num_threads`` = ``--threads``; ORT folds BN itself). The three networks run
interleaved in rounds (rotating order, same input) in one process; per runtime: the median ms of
each, ``deep_vs_torchvision`` (deep / torchvision, goal 0.95-1.05),
``shallow_speedup_vs_torchvision`` (torchvision / shallow) and ``deep_vs_shallow`` (deep /
shallow), each with a 95% bootstrap interval over the paired rounds (ratio of medians).

    .venv/bin/python benchmarks/transform_speedup.py [--threads 1] [--iters 30] [--iters-batch 5]
                                                     [--rounds 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("DWNAS_TRACKING", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from dwnas.nn.counters import count  # noqa: E402
from dwnas.nn.static import build_static  # noqa: E402
from dwnas.space import Arch, BlockArch, Space  # noqa: E402
from dwnas.transform import (  # noqa: E402
    fold_deep,
    randomize_bn_,
    transform,
    verify,
    verify_transform,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOBILENET_V2_DEPTHS = (2, 3, 4, 3, 3, 1)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(models: dict, x, warmup: int, iters: int) -> tuple[dict, dict]:
    """Median wall-clock and calling-thread CPU latency (ms) of each model. Iterations interleave
    the models, so that load from other processes on a shared machine hits them alike; the CPU time
    leaves out time the thread waited for a core (meaningful with one torch thread)."""
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                model(x)
        for _ in range(iters):
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.thread_time()
                model(x)
                cpu[name].append(time.thread_time() - start_cpu)
                wall[name].append(time.perf_counter() - start)
    return ({name: round(1000 * statistics.median(t), 3) for name, t in wall.items()},
            {name: round(1000 * statistics.median(t), 3) for name, t in cpu.items()})


def with_speedup(row: dict) -> dict:
    return {**row, "speedup": round(row["deep"] / row["shallow"], 3)}


def bench_arch(space: Space, arch: Arch, args) -> dict:
    torch.manual_seed(0)
    deep_bn = randomize_bn_(build_static(space, arch, 1000), seed=0).eval()
    report = verify_transform(deep_bn, resolutions=(224, 225), batch=2)
    deep, shallow = fold_deep(deep_bn), transform(deep_bn)
    result = {
        "arch": arch.to_dict(),
        "verify": {"max_abs_err": report.max_abs_err, "max_rel_err": report.max_rel_err,
                   "resolutions": [224, 225]},
        "counts": {"deep": count(deep, 224).to_dict(), "shallow": count(shallow, 224).to_dict()},
        "latency_ms": {},
        "cpu_ms": {},
    }
    for batch, warmup, iters in ((1, args.warmup, args.iters), (32, 1, args.iters_batch)):
        wall, cpu = {}, {}
        for layout in ("contiguous", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = torch.randn(batch, 3, 224, 224).to(memory_format=fmt)
            models = {"deep": deep.to(memory_format=fmt), "shallow": shallow.to(memory_format=fmt)}
            wall_row, cpu_row = median_ms(models, x, warmup, iters)
            wall[layout], cpu[layout] = with_speedup(wall_row), with_speedup(cpu_row)
        result["latency_ms"][f"batch{batch}"] = wall
        if args.threads == 1:
            result["cpu_ms"][f"batch{batch}"] = cpu
    return result


# --- dwnas vs torchvision's MobileNetV2 under TorchScript and ONNX Runtime ---------------------

def mobilenet_v2_trio(space: Space) -> tuple[dict, dict]:
    """torchvision's mobilenet_v2 (random BN statistics), dwnas's MobileNetV2 with its weights
    (BN folded) and the all-linear shallow form; plus their counts and verification errors."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    tv = randomize_bn_(mobilenet_v2(weights=None, num_classes=1000, dropout=0.2), seed=0).eval()

    def blocks(linear: bool) -> Arch:  # MobileNetV2: kernel 3, expand 6, depths 2-3-4-3-3-1
        return Arch(tuple(tuple(BlockArch(3, 6, linear) for _ in range(d))
                          for d in MOBILENET_V2_DEPTHS), 224)

    deep_bn = build_static(space, blocks(False), 1000, dropout=0.2)
    theirs, ours = tv.state_dict(), deep_bn.state_dict()
    if [v.shape for v in theirs.values()] != [v.shape for v in ours.values()]:
        raise SystemExit("dwnas's MobileNetV2 does not have torchvision's layer shapes")
    deep_bn.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))
    deep_bn.eval()
    linear_bn = build_static(space, blocks(True), 1000, dropout=0.2)
    linear_bn.load_state_dict(deep_bn.state_dict())
    linear_bn.eval()
    deep, shallow = fold_deep(deep_bn), transform(linear_bn)
    nets = {"torchvision": tv, "deep": deep, "shallow": shallow}
    res = [224, 225]
    info = {
        "deep_arch": blocks(False).to_dict(),
        "shallow_arch": blocks(True).to_dict(),
        "counts": {name: count(net, 224).to_dict() for name, net in nets.items()},
        "verify": {
            "deep_bn_vs_torchvision": verify(tv, deep_bn, res).max_rel_err,
            "deep_vs_torchvision": verify(tv, deep, res).max_rel_err,
            "shallow_vs_linear_bn": verify(linear_bn, shallow, res).max_rel_err,
            "resolutions": res,
        },
    }
    return nets, info


def compile_torchscript(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(model.eval(), x, check_trace=False))


def compile_torch_export(model: nn.Module, x: torch.Tensor):
    """The pipeline's ``torch`` runtime: a ``torch.export`` program of the BN-folded network
    (torchvision's BN folded by dwnas's ``fold_bn``, as ``jit.freeze`` and ORT fold it)."""
    from dwnas.transform.deploy import fold_bn

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.export.export(fold_bn(model), (x,)).module()


def compile_onnxruntime(model: nn.Module, x: torch.Tensor, path: str, threads: int):
    import onnxruntime as ort

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}

    def run(_x):
        return session.run(None, feed)[0]
    return run


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, rng: np.random.Generator,
                    resamples: int = 2000) -> dict:
    """median(num) / median(den) and its 95% percentile-bootstrap interval over paired rounds."""
    idx = rng.integers(0, len(num), size=(resamples, len(num)))
    ratios = np.median(num[idx], axis=1) / np.median(den[idx], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"ratio": round(float(np.median(num) / np.median(den)), 3),
            "ci95": [round(float(low), 3), round(float(high), 3)]}


def time_rounds(runners: dict, x, warmup: int, rounds: int) -> dict:
    """Per-round wall-clock ms of each runner: every round runs each once, in rotating order."""
    names = list(runners)
    wall = {name: [] for name in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for run in runners.values():
                run(x)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                runners[name](x)
                wall[name].append(1000 * (time.perf_counter() - start))
    return {name: np.asarray(t) for name, t in wall.items()}


def bench_vs_torchvision(space: Space, args) -> dict:
    nets, info = mobilenet_v2_trio(space)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = {name: net(x) for name, net in nets.items()}
    rng = np.random.default_rng(0)
    runtimes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("torchscript", "torch", "onnxruntime"):
            if runtime == "torchscript":
                runners = {name: compile_torchscript(net, x) for name, net in nets.items()}
            elif runtime == "torch":
                runners = {name: compile_torch_export(net, x) for name, net in nets.items()}
            else:
                runners = {name: compile_onnxruntime(net, x, os.path.join(tmp, f"{name}.onnx"),
                                                     args.threads)
                           for name, net in nets.items()}
            with torch.inference_mode():
                errors = {}
                for name, run in runners.items():
                    out = torch.as_tensor(run(x))
                    ref = eager[name]
                    errors[name] = float((out - ref).abs().max() / ref.abs().max())
            wall = time_rounds(runners, x, args.warmup_rounds, args.rounds)
            runtimes[runtime] = {
                "median_ms": {name: round(float(np.median(t)), 3) for name, t in wall.items()},
                "deep_vs_torchvision": bootstrap_ratio(wall["deep"], wall["torchvision"], rng),
                "shallow_speedup_vs_torchvision": bootstrap_ratio(wall["torchvision"],
                                                                  wall["shallow"], rng),
                "deep_vs_shallow": bootstrap_ratio(wall["deep"], wall["shallow"], rng),
                "rel_err_vs_eager": errors,
            }
    return {"batch": 1, "resolution": 224, "rounds": args.rounds,
            "warmup_rounds": args.warmup_rounds, **info, "runtimes": runtimes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations at batch 1")
    parser.add_argument("--iters-batch", type=int, default=5, help="timed iterations at batch 32")
    parser.add_argument("--rounds", type=int, default=100,
                        help="timed rounds of the torchvision comparison")
    parser.add_argument("--warmup-rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations: --warmup 2 --iters 10 --iters-batch 2 --rounds 30 "
                             "--warmup-rounds 5")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.iters, args.iters_batch = 2, 10, 2
        args.rounds, args.warmup_rounds = 30, 5
    torch.set_num_threads(args.threads)
    with open(os.path.join(REPO, "params", "imagenet.yaml")) as f:
        space = Space.from_params(yaml.safe_load(f)["space"])
    all_linear = Arch(tuple(tuple(BlockArch(3, 6, True) for _ in range(d))
                            for d in MOBILENET_V2_DEPTHS), 224)
    all_linear_max = Arch(tuple(tuple(BlockArch(3, 6, True) for _ in range(max(st.depths)))
                                for st in space.stages), 224)
    mixed = space.sample(random.Random(0)).with_resolution(224)
    start = time.perf_counter()
    out = {
        "benchmark": "transform_speedup",
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "resolution": 224,
        "quick": args.quick,
        "vs_torchvision": bench_vs_torchvision(space, args),
        "archs": {"all_linear_k3": bench_arch(space, all_linear, args),
                  "all_linear_k3_max_depth": bench_arch(space, all_linear_max, args),
                  "mixed": bench_arch(space, mixed, args)},
    }
    out["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
