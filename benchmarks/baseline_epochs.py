"""How many epochs does a compared method's network need? Prints ONE JSON object.

Trains one baseline network alone, from scratch, with the pipeline's own training loop
(``dwnas.baselines.common.fit``: the params' baseline recipe, its augmentation and schedule) for
``--epochs``, then scores it with the pipeline's evaluator (BN recalibration, the full val split,
95% Wilson interval). Issue 12 asked why MobileNetV2 and ODN's ResNet-18 stay below 70% on the
embedded default; docs/training.md holds the figures.

    .venv/bin/python benchmarks/baseline_epochs.py --prepared results/default/data/prepared \\
        --network mobilenetv2_w0.35 --epochs 8 [--recipe '{"lr": 0.001}'] [--threads 2]

``--network``: ``mobilenetv2_w<width>`` (the MobileNetV2 baseline, ``baselines.mobilenetv2.recipe``)
or ``resnet18_w<width>`` (ODN's ResNet-18 backbone at full depth, ``baselines.odn.recipe``).
``--recipe``: JSON overriding keys of that recipe.

Diagnostics of MobileNetV2's slow start (docs/training.md), each a departure from the baseline:
``--variant`` (comma-separated) ``zero_init`` (the last BN of every residual block starts at zero),
``kernel5``, ``head256`` (a 256-channel head instead of 1280), ``stage1_stride1`` (its first
stride-2 stage at stride 1); ``--teacher-epochs N`` first trains params' space's largest network
N epochs with the same recipe, then trains the network on its soft predictions (distillation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("DWNAS_TRACKING", "0")


VARIANTS = ("zero_init", "kernel5", "head256", "stage1_stride1")


def mobilenetv2_section(width: float, resolution: int, variants: list[str]) -> dict:
    """The MobileNetV2 baseline's space section with the ``variants``' changes."""
    from dwnas.baselines import mobilenetv2

    section = mobilenetv2.space_section(width, resolution)
    if "kernel5" in variants:
        for stage in section["stages"]:
            stage["kernels"] = [5]
    if "head256" in variants:
        section["head_channels"] = 256
    if "stage1_stride1" in variants:
        section["stages"][0]["stride"] = 1
    return section


def largest_network(section: dict, classes: int, zero_init: bool = False):
    """A freshly initialised static network: ``section``'s largest architecture."""
    from torch import nn

    from dwnas.nn.supernet import Supernet
    from dwnas.space import Space

    space = Space.from_params(section)
    net = Supernet(space, classes).subnet(space.largest())
    if zero_init:  # each residual branch starts as nothing, its block as the identity
        for block in net.modules():
            if getattr(block, "shortcut", False) is True:
                nn.init.zeros_(block.project_bn.weight)
    return net


def build(network: str, resolution: int, classes: int, variants: list[str]):
    """(network, params key of its recipe) for ``mobilenetv2_w<width>`` or ``resnet18_w<width>``."""
    from dwnas.baselines import odn

    name, _, width = network.partition("_w")
    try:
        float(width)
    except ValueError:
        name = None
    if name == "mobilenetv2":
        section = mobilenetv2_section(float(width), resolution, variants)
        return largest_network(section, classes, "zero_init" in variants), "mobilenetv2"
    if variants:
        raise SystemExit("error: --variant applies to --network mobilenetv2_w<width> only")
    if name == "resnet18":
        backbone = odn.backbone("resnet18", None, int(width))
        return odn.build(backbone, backbone.full_depth, classes), "odn"
    raise SystemExit(f"error: --network {network!r}: use mobilenetv2_w<width> or resnet18_w<width>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", default="results/default/data/prepared")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--network", default="mobilenetv2_w0.35")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--recipe", default="{}", help="JSON: keys of the recipe to override")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--teacher-epochs", type=int, default=0,
                        help="distil from params' space's largest network trained this long")
    args = parser.parse_args()
    variants = [v for v in args.variant.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"error: --variant {','.join(unknown)}: use {', '.join(VARIANTS)}")

    import torch

    from dwnas.baselines.common import Setup, fit, recipe_of
    from dwnas.config import load_params
    from dwnas.data.loaders import num_classes
    from dwnas.report.tables import wilson_interval

    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    torch.manual_seed(args.seed)
    classes = num_classes(args.prepared)
    net, method = build(args.network, args.resolution, classes, variants)
    recipe = {**params["baselines"][method]["recipe"], **json.loads(args.recipe),
              "epochs": args.epochs}
    setup = Setup(prepared=args.prepared, out=".", seed=args.seed,
                  calib_images=params["train"]["eval"]["calib_images"],
                  eval_batch=params["train"]["eval"]["batch_size"])
    evaluation = setup.eval_data(args.resolution)
    teacher, teacher_top1 = None, None
    if args.teacher_epochs:
        teacher = largest_network(params["space"], classes)
        fit(teacher, args.prepared, recipe_of({**recipe, "epochs": args.teacher_epochs},
                                              f"baselines.{method}.recipe", single_path=True),
            args.resolution, args.seed, workers=args.workers, desc="teacher")
        teacher_top1 = evaluation.accuracy(teacher, args.resolution)["top1"]
        recipe["distill"] = True
    started = time.monotonic()
    history = fit(net, args.prepared, recipe_of(recipe, f"baselines.{method}.recipe",
                                                single_path=True),
                  args.resolution, args.seed, workers=args.workers, teacher=teacher,
                  desc=args.network)
    train_seconds = time.monotonic() - started
    accuracy = evaluation.accuracy(net, args.resolution)
    print(json.dumps({"network": args.network, "variants": variants,
                      "teacher_epochs": args.teacher_epochs, "teacher_top1": teacher_top1,
                      "epochs": args.epochs, "recipe": recipe,
                      "resolution": args.resolution, "top1": accuracy["top1"],
                      "top1_ci95": wilson_interval(accuracy["top1"], accuracy["n"]),
                      "val_images": accuracy["n"],
                      "loss_per_epoch": [round(h["loss"], 4) for h in history],
                      "train_seconds": round(train_seconds, 1),
                      "threads": torch.get_num_threads(), "machine": platform.machine()},
                     indent=2))


if __name__ == "__main__":
    from dwnas.errors import DwnasError

    try:
        main()
    except DwnasError as exc:
        raise SystemExit(f"error: {exc}") from None
