"""How fast do the space's networks learn the embedded default? Prints ONE JSON object.

Trains static networks of the default space (and of variants of its macro design) alone, with
``dwnas.data.learnability.fit_and_score`` (AdamW, one-cycle, flips), on a prepared dataset resized
once to ``--resolution``, and reports val / train top-1 and MACs, side by side with the plain
7-layer CNN of ``benchmarks/synth_learnability.py``. Issue 12 asked why the supernet learns slowly;
docs/training.md holds the figures.

    .venv/bin/python benchmarks/space_learnability.py --prepared results/default/data/prepared \\
        [--variants base@8,base@16,stage1_stride1@8,wide@8,cnn@8] [--resolution 48] [--no-flip]

A variant is NAME@EPOCHS; NAME is ``base`` (params/default.yaml's space, largest network),
``smallest`` (its smallest), ``stage1_stride1`` (the first searchable stage keeps its input size),
``wide`` (first block 16 and stages 24/32/48/64 channels), ``cnn``, or the MobileNetV2 baseline
``mnv2_w<width>`` (``mnv2_w<width>_s1``: its first stride-2 stage at stride 1).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform

os.environ.setdefault("DWNAS_TRACKING", "0")


def space_variant(section: dict, name: str, resolution: int):
    from dwnas.space import Space

    section = copy.deepcopy(section)
    if name.startswith("mnv2_w"):  # the MobileNetV2 baseline, e.g. mnv2_w0.35 (+ _s1: first stage stride 1)
        from dwnas.baselines.mobilenetv2 import space_section

        width, _, stride1 = name[len("mnv2_w"):].partition("_")
        section = space_section(float(width), resolution)
        if stride1 == "s1":
            section["stages"][0]["stride"] = 1
    elif name == "stage1_stride1":
        section["stages"][0]["stride"] = 1
    elif name == "wide":
        section["first_block"]["channels"] = 16
        for stage, channels in zip(section["stages"], (24, 32, 48, 64), strict=False):
            stage["channels"] = channels
    elif name not in ("base", "smallest"):
        raise SystemExit(f"error: --variants: unknown variant {name!r}")
    return Space.from_params(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", required=True, help="a prepared dataset (dwnas data prepare)")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--variants", default="base@8,base@16,stage1_stride1@8,wide@8,cnn@8")
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-flip", action="store_true",
                        help="no random horizontal flips (digits: a mirror image changes the class)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from dwnas.config import load_params
    from dwnas.data.learnability import fit_and_score, load_split, small_cnn
    from dwnas.nn.counters import count
    from dwnas.nn.static import build_static

    if args.threads:
        torch.set_num_threads(args.threads)
    section = load_params(args.params)["space"]

    def resized(split: str):
        x, y = load_split(args.prepared, split)
        x = F.interpolate(torch.from_numpy(x).float(), size=(args.resolution, args.resolution),
                          mode="bilinear", antialias=True).round().clamp(0, 255).byte().numpy()
        return x, y

    train, val = resized("train"), resized("val")
    classes = int(max(train[1].max(), val[1].max())) + 1
    rows = []
    for item in args.variants.split(","):
        name, _, epochs = item.partition("@")
        torch.manual_seed(args.seed)
        if name == "cnn":
            net = small_cnn(classes)
        else:
            space = space_variant(section, name, args.resolution)
            arch = space.smallest() if name == "smallest" else space.largest()
            net = build_static(space, arch.with_resolution(args.resolution), classes)
        macs = count(net, args.resolution).macs
        result = fit_and_score(net, train, val, int(epochs or 8), lr=3e-3, weight_decay=5e-4,
                               seed=args.seed, flip=not args.no_flip)
        rows.append({"variant": name, "mmacs": macs / 1e6, **result})
    base = next((r for r in rows if r["variant"] == "base"), None)
    for row in rows:
        row["macs_vs_base"] = row["mmacs"] / base["mmacs"] if base else None
    print(json.dumps({"prepared": args.prepared, "resolution": args.resolution,
                      "flip": not args.no_flip,
                      "train_images": len(train[1]), "val_images": len(val[1]),
                      "threads": torch.get_num_threads(), "machine": platform.machine(),
                      "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
