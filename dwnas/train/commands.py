"""``dwnas train supernet | elastic | sweep``: the two training techniques and the resolution sweep.

Recipe and space arrive as JSON (inline or ``@file``) so that a Snakemake rule hands over a whole
params section through ``params:`` and re-runs when any key of it changes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dwnas.cli import add_eval_flags, json_arg, relaunch_under_torchrun
from dwnas.config import RESOLUTION_MAX, RESOLUTION_MIN, range_problems, resolution_arg


def _run_training(args: argparse.Namespace, stage: str, resolution: tuple[int, int]) -> int:
    relaunched = relaunch_under_torchrun(args)
    if relaunched is not None:
        return relaunched
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.train.engine import Trainer, TrainJob
    from dwnas.train.recipe import Recipe

    for problem in range_problems("resolution", *resolution):
        raise DwnasError(problem)
    if resolution[0] < 16:
        raise DwnasError(f"resolution: min must be >= 16 (got {resolution[0]})")
    recipe = Recipe.from_params(args.recipe, where=f"train.{stage}")
    if args.init is not None and not Path(args.init).is_file():
        raise DwnasError(f"--init {args.init}: checkpoint not found")
    job = TrainJob(
        stage=stage, prepared=Path(args.prepared), out=Path(args.out), summary=Path(args.summary),
        recipe=recipe, seed=args.seed, resolution=resolution, space=getattr(args, "space", None),
        init=Path(args.init) if args.init else None, workers=args.workers,
        calib_images=args.calib_images, val_images=args.val_images, eval_batch=args.eval_batch,
        resume=not args.no_resume,
    )
    if os.environ.get("RANK", "0") != "0":
        os.environ["DWNAS_TRACKING"] = "0"
    run_params = {"recipe": args.recipe, "resolution": list(resolution), "seed": args.seed,
                  "init": args.init, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    with track.stage_run(f"train_{stage}", run_params) as run:
        trainer = Trainer(job, on_epoch=lambda m, step: run.log_metrics(m, step=int(m["epoch"])))
        try:
            summary = trainer.run()
        finally:
            trainer.ctx.close()
        run.log_metrics({"final": summary["final"]})
        run.log_artifact(job.summary)
    return 0


def _supernet(args: argparse.Namespace) -> int:
    return _run_training(args, "supernet", (args.resolution, args.resolution))


def _elastic(args: argparse.Namespace) -> int:
    return _run_training(args, "elastic", (args.resolution_min, args.resolution_max))


def _sweep(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import write_json
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.train.evaluate import ImageBank, evaluate_subnet

    lo, hi, step = args.resolutions
    if lo > hi or step < 1:
        raise DwnasError(f"--resolutions {lo}:{hi}:{step}: need min <= max and step >= 1")
    model, _ = load_supernet(args.checkpoint)
    space = model.space
    resolutions = list(range(lo, hi + 1, step))
    calib = ImageBank.load(args.prepared, "train", hi, args.calib_images, args.seed)
    val = ImageBank.load(args.prepared, "val", hi, args.val_images, args.seed)
    rows = []
    for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        for res in resolutions:
            acc = evaluate_subnet(model, arch.with_resolution(res), res, calib, val, args.eval_batch)
            rows.append({"label": args.label, "subnet": name, "resolution": res, **acc})
    spread = {name: max(r["top1"] for r in rows if r["subnet"] == name)
              - min(r["top1"] for r in rows if r["subnet"] == name)
              for name in ("largest", "smallest")}
    summary = {"label": args.label, "checkpoint": str(args.checkpoint), "rows": rows,
               "top1_spread": spread}
    write_json(args.out, summary)
    track.log_stage(f"sweep_{args.label}", {"resolutions": resolutions, "label": args.label},
                    {"top1_spread": spread}, [args.out])
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
