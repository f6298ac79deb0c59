"""Training-loader throughput, JPEG files vs the packed copy, measured side by side. Prints one JSON
object.

Generates the embedded dataset (or takes ``--prepared``), prepares it with a packed copy, then
alternates full epochs of the JPEG loader and the packed loader (same seed, same resolution, same
workers), after one warm-up epoch each, and reports the median images/s of
each and their ratio. Alternating keeps both kinds exposed to the same machine load.

    python benchmarks/data_loading.py                      # embedded default: 72 px images
    python benchmarks/data_loading.py --image-size 320     # ImageNet-sized files
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _epoch_rate(loader, epoch: int) -> float:
    loader.set_epoch(epoch)
    start = time.perf_counter()
    images = 0
    for x, _ in loader:
        images += len(x)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="an existing prepared directory (packed/ is added if missing)",
    )
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=72)
    parser.add_argument(
        "--pack-size",
        type=int,
        default=None,
        help="packed side in px (default: the resolution)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=80,
        help="loader resolution (default 80: the embedded params' largest, which elastic "
        "training loads at before resizing on the device)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per kind")
    args = parser.parse_args()
    os.environ.setdefault("DWNAS_TRACKING", "0")

    import torch

    from dwnas.cli import main as dwnas
    from dwnas.data.loaders import build_train_loader

    pack_size = args.pack_size or args.resolution
    with tempfile.TemporaryDirectory() as tmp:
        prepared = args.prepared
        if prepared is None:
            raw, prepared = Path(tmp) / "raw", Path(tmp) / "prepared"
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
                        "0",
                    ]
                )
                == 0
            )
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
        start = time.perf_counter()
        assert dwnas(["data", "pack", "--prepared", str(prepared), "--size", str(pack_size)]) == 0
        pack_seconds = time.perf_counter() - start

        common = dict(
            batch_size=args.batch_size, resolution=args.resolution, workers=args.workers, seed=0
        )
        loaders = {
            "jpeg": build_train_loader(prepared, packed=False, **common),
            "packed": build_train_loader(prepared, packed=True, **common),
        }
        rates: dict[str, list[float]] = {k: [] for k in loaders}
        for loader in loaders.values():
            _epoch_rate(loader, 0)  # warm-up: worker start, page cache
        for r in range(args.rounds):
            for kind, loader in loaders.items():
                rates[kind].append(_epoch_rate(loader, r + 1))
        images = len(loaders["jpeg"]) * args.batch_size
        del loaders

    jpeg, packed = statistics.median(rates["jpeg"]), statistics.median(rates["packed"])
    print(
        json.dumps(
            {
                "benchmark": "data_loading",
                "jpeg_images_per_s": round(jpeg, 1),
                "packed_images_per_s": round(packed, 1),
                "packed_over_jpeg": round(packed / jpeg, 2),
                "rates": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
                "images_per_epoch": images,
                "image_size": args.image_size if args.prepared is None else None,
                "pack_size": pack_size,
                "pack_seconds": round(pack_seconds, 2),
                "resolution": args.resolution,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "torch": torch.__version__,
                "host": f"{platform.machine()}, {os.cpu_count()} cpus",
            },
            indent=2,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
