"""``dwnas train supernet | elastic | sweep``: the two training techniques and the resolution sweep.

Recipe and space arrive as JSON (inline or ``@file``) so that a Snakemake rule hands over a whole
params section through ``params:`` and re-runs when any key of it changes. These are argparse
shells: the work is :mod:`dwnas.train.run` (``run``, ``sweep``); ``--nproc`` relaunches the command
under torchrun here, before it.
"""

from __future__ import annotations

import argparse

from dwnas.cli import add_eval_flags, json_arg, relaunch_under_torchrun
from dwnas.config import RESOLUTION_MAX, RESOLUTION_MIN, resolution_arg


def _run_training(args: argparse.Namespace, stage: str, resolution: tuple[int, int]) -> int:
    relaunched = relaunch_under_torchrun(args)
    if relaunched is not None:
        return relaunched
    from dwnas.train.run import run

    run(stage=stage, prepared=args.prepared, recipe=args.recipe, resolution=resolution,
        out=args.out, summary=args.summary, space=getattr(args, "space", None), init=args.init,
        seed=args.seed, workers=args.workers, calib_images=args.calib_images,
        val_images=args.val_images, eval_batch=args.eval_batch, resume=not args.no_resume)
    return 0


def _supernet(args: argparse.Namespace) -> int:
    return _run_training(args, "supernet", (args.resolution, args.resolution))


def _elastic(args: argparse.Namespace) -> int:
    return _run_training(args, "elastic", (args.resolution_min, args.resolution_max))


def _sweep(args: argparse.Namespace) -> int:
    from dwnas.train.run import sweep

    sweep(checkpoint=args.checkpoint, prepared=args.prepared, resolutions=args.resolutions,
          label=args.label, out=args.out, seed=args.seed, calib_images=args.calib_images,
          val_images=args.val_images, eval_batch=args.eval_batch)
    return 0


def _resolution_range(text: str) -> tuple[int, int, int]:
    try:
        lo, hi, step = (int(v) for v in text.split(":"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX:STEP, got {text!r}") from exc
    for value in (lo, hi):
        if not RESOLUTION_MIN <= value <= RESOLUTION_MAX:
            raise argparse.ArgumentTypeError(
                f"{text}: resolutions must be between {RESOLUTION_MIN} and {RESOLUTION_MAX} px")
    return lo, hi, step


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared dataset dir (train.csv, val.csv)")
    parser.add_argument("--recipe", required=True, type=json_arg,
                        help="recipe as JSON or @file (the params section train.<stage>)")
    parser.add_argument("--out", required=True, help="final checkpoint path")
    parser.add_argument("--summary", required=True, help="JSON summary path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    add_eval_flags(parser)
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes (GPUs); >1 relaunches under torchrun")
    parser.add_argument("--no-resume", action="store_true",
                        help="start fresh even if a matching <out>.state.pt exists")


def register(sub) -> None:
    parser = sub.add_parser("train", help="supernet (hybrid transformable) and elastic training")
    tsub = parser.add_subparsers(dest="train_command", metavar="STAGE", required=True)

    sup = tsub.add_parser("supernet", help="hybrid transformable training of the weight-sharing supernet",
                          description="Sandwich-rule training with random linear masks and in-place "
                          "distillation from the largest deep subnet.")
    _common(sup)
    sup.add_argument("--space", required=True, type=json_arg, help="space as JSON or @file")
    sup.add_argument("--resolution", type=resolution_arg, required=True,
                     help="training resolution (px)")
    sup.set_defaults(func=_supernet, init=None)

    ela = tsub.add_parser("elastic", help="arbitrary-resolution elastic training from a supernet",
                          description="Each step draws any integer resolution in [min, max] and "
                          "resizes the batch on the device.")
    _common(ela)
    ela.add_argument("--init", required=True, help="supernet checkpoint to continue from")
    ela.add_argument("--resolution-min", type=resolution_arg, required=True)
    ela.add_argument("--resolution-max", type=resolution_arg, required=True)
    ela.set_defaults(func=_elastic)

    swp = tsub.add_parser("sweep", help="accuracy vs resolution of the largest and smallest subnets")
    swp.add_argument("--checkpoint", required=True)
    swp.add_argument("--prepared", required=True)
    swp.add_argument("--resolutions", required=True, type=_resolution_range, help="MIN:MAX:STEP")
    swp.add_argument("--label", required=True, help="curve label, e.g. elastic or non-elastic")
    swp.add_argument("--out", required=True)
    swp.add_argument("--seed", type=int, default=0)
    add_eval_flags(swp)
    swp.set_defaults(func=_sweep)
