"""Latency of the deep vs the shallow (transformed) network on this CPU; prints ONE JSON object.

Architectures of params/imagenet.yaml's space at 224 px: (a) ``all_linear_k3``, every searchable
block kernel 3, expand 6, linear, at MobileNetV2's depths 2-3-4-3-3-1 (MobileNetV2 with its
searchable blocks linearised), and ``all_linear_k3_max_depth``, the same at the space's maximum
depths 4-4-4-4-4-1; (b) ``mixed``, a seeded sample of the space (kernels 3-7, expands 3-6, linear
and non-linear blocks) moved to 224 px.

"deep" is the deep network as deployed (BN folded, nothing merged, ``fold_deep``), "shallow" the
transformed one; both eager PyTorch under ``torch.inference_mode`` after warm-up, contiguous
(NCHW) and channels-last, at batch 1 and batch 32; the median over the timed iterations (deep and
shallow interleaved) is reported with the ratio deep / shallow, plus the verification error
(random BN statistics).

    .venv/bin/python benchmarks/transform_speedup.py [--threads 1] [--iters 30] [--iters-batch 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time

os.environ.setdefault("DWNAS_TRACKING", "0")

import torch  # noqa: E402
import yaml  # noqa: E402

from dwnas.nn.counters import count  # noqa: E402
from dwnas.nn.static import build_static  # noqa: E402
from dwnas.space import Arch, BlockArch, Space  # noqa: E402
from dwnas.transform import fold_deep, randomize_bn_, transform, verify_transform  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations at batch 1")
    parser.add_argument("--iters-batch", type=int, default=5, help="timed iterations at batch 32")
    args = parser.parse_args()
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
        "archs": {"all_linear_k3": bench_arch(space, all_linear, args),
                  "all_linear_k3_max_depth": bench_arch(space, all_linear_max, args),
                  "mixed": bench_arch(space, mixed, args)},
    }
    out["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
