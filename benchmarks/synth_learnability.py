"""Is the embedded dataset learnable but not trivial? Prints one JSON object.

Generates the embedded dataset (default params: 10 classes, 300 train / 60 val per class, 72 px)
in a temporary directory, prepares it with `dwnas data prepare`, then trains a small CNN and a
linear classifier on raw pixels for the same number of epochs and reports both val top-1.

    python benchmarks/synth_learnability.py [--classes 10 --train-per-class 300 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=72)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("DWNAS_TRACKING", "0")

    import torch

    from dwnas.cli import main as dwnas
    from dwnas.data.learnability import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        raw, prepared = Path(tmp) / "raw", Path(tmp) / "prepared"
        start = time.perf_counter()
        assert (
            dwnas(
                [
                    "data",
                    "synth",
                    "--out",
                    str(raw),
                    "--classes",
                    str(args.classes),
                    "--train-per-class",
                    str(args.train_per_class),
                    "--val-per-class",
                    str(args.val_per_class),
                    "--image-size",
                    str(args.image_size),
                    "--seed",
                    str(args.seed),
                ]
            )
            == 0
        )
        synth_s = time.perf_counter() - start
        start = time.perf_counter()
        assert (
            dwnas(
                [
                    "data",
                    "prepare",
                    "--root",
                    str(raw),
                    "--subset",
                    "all",
                    "--out",
                    str(prepared),
                    "--on-corrupt",
                    "fail",
                ]
            )
            == 0
        )
        prepare_s = time.perf_counter() - start
        result = evaluate(
            prepared, cnn_epochs=args.epochs, linear_epochs=args.epochs, seed=args.seed
        )
    result.update(
        {
            "benchmark": "synth_learnability",
            "params": vars(args),
            "synth_seconds": round(synth_s, 2),
            "prepare_seconds": round(prepare_s, 2),
            "torch_threads": torch.get_num_threads(),
            "host": f"{platform.machine()}, {os.cpu_count()} cpus",
        }
    )
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
