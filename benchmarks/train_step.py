"""Supernet training step vs the same passes on equivalent static subnets: the elastic overhead.

Prints one JSON object: images/s of a sandwich step (4 subnets: largest, smallest, 2 random) on
the weight-sharing supernet, and of the same forward/backward passes on static copies of those
subnets, measured side by side (interleaved repetitions), and their ratio.

    python benchmarks/train_step.py [--params params/default.yaml] [--batch 64] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from dwnas.nn.supernet import Supernet
from dwnas.space import Space
from dwnas.train.sampling import sample_step_archs


def step(models, archs, x, y, supernet: bool) -> float:
    start = time.perf_counter()
    for model, arch in zip(models, archs, strict=True):
        out = model(x, arch) if supernet else model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path(args.params).read_text())
    space = Space.from_params(params["space"])
    resolution = params["train"]["supernet"]["resolution"]
    supernet = Supernet(space, 10).train()
    archs = sample_step_archs(space, seed=0, step=0, n=4)
    statics = [supernet.subnet(a).train() for a in archs]
    x = torch.randn(args.batch, 3, resolution, resolution)
    y = torch.randint(0, 10, (args.batch,))
    step([supernet] * 4, archs, x, y, True)  # warm-up both paths
    step(statics, archs, x, y, False)
    elastic, static = [], []
    for _ in range(args.reps):
        elastic.append(step([supernet] * 4, archs, x, y, True))
        static.append(step(statics, archs, x, y, False))
    images = 4 * args.batch
    result = {
        "benchmark": "train_step",
        "params": args.params, "batch": args.batch, "resolution": resolution,
        "subnets_per_step": 4, "threads": args.threads, "reps": args.reps,
        "supernet_images_per_s": images / statistics.median(elastic),
        "static_images_per_s": images / statistics.median(static),
        "elastic_overhead": statistics.median(elastic) / statistics.median(static) - 1.0,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
