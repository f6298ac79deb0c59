"""``dwnas baseline mobilenetv2 | depthshrinker | hurricane supernet | hurricane search | odn``.

Every command writes its ``--out`` folder atomically: the weights, ``arch.json`` (a space
architecture) or ``config.json`` (any other network), the deploy files of each runtime
(``deep.pt2`` / ``shallow.pt2``, ``deep.onnx`` / ``shallow.onnx``, exported, verified and evaluated
by Double-Win's own path, :func:`dwnas.transform.deploy.export_network`), ``transform.json`` and ``summary.json``; and logs one MLflow run,
stage ``baseline_<method>``, tagged with the method and the variant (the report's ``budget``).
Settings arrive as JSON (inline or ``@file``), whole params sections, as in ``dwnas train``.

These are argparse shells: each converts its flags and calls its method's ``run`` (one module per
method: :mod:`dwnas.baselines.mobilenetv2`, :mod:`~dwnas.baselines.depthshrinker`,
:mod:`~dwnas.baselines.hurricane`, :mod:`~dwnas.baselines.odn`; what they share is in
:mod:`dwnas.baselines.common`).
"""

from __future__ import annotations

import argparse

from dwnas.cli import add_eval_flags, add_runtimes_flag, json_arg, relaunch_under_torchrun
from dwnas.config import resolution_arg


def _setup(args: argparse.Namespace):
    """The flags every baseline command shares, as :class:`~dwnas.baselines.common.Setup`."""
    from dwnas.baselines.common import Setup

    return Setup(prepared=args.prepared, out=args.out, seed=args.seed, workers=args.workers,
                 calib_images=args.calib_images, val_images=args.val_images,
                 eval_batch=args.eval_batch, tolerance=args.tolerance, runtimes=args.runtimes)


def _mobilenetv2(args: argparse.Namespace) -> int:
    relaunched = relaunch_under_torchrun(args)
    if relaunched is not None:
        return relaunched
    from dwnas.baselines import mobilenetv2

    mobilenetv2.run(_setup(args), width=args.width, resolution=args.resolution, recipe=args.recipe,
                    resume=not args.no_resume)
    return 0


def _depthshrinker(args: argparse.Namespace) -> int:
    from dwnas.baselines import depthshrinker

    depthshrinker.run(_setup(args), checkpoint=args.checkpoint, arch_file=args.arch,
                      budget=args.budget, linear_fraction=args.linear_fraction, recipe=args.recipe)
    return 0


def _hurricane_supernet(args: argparse.Namespace) -> int:
    from dwnas.baselines.hurricane.stages import run_supernet

    run_supernet(_setup(args), space=args.space, settings=args.settings, device=args.device,
                 measure_settings=args.measure_settings)
    return 0


def _hurricane_search(args: argparse.Namespace) -> int:
    from dwnas.baselines.hurricane.stages import run_search

    run_search(_setup(args), supernet_file=args.supernet, lut=args.lut, budgets=args.budgets,
               budget=args.budget, settings=args.settings, search_settings=args.search_settings)
    return 0


def _odn(args: argparse.Namespace) -> int:
    from dwnas.baselines import odn

    odn.run(_setup(args), backbone_name=args.backbone, resolution=args.resolution,
            criterion=args.criterion, recipe=args.recipe, space=args.space,
            resnet_width=args.resnet_width, start_depth=args.start_depth)
    return 0


# -- parser -----------------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared dataset dir")
    parser.add_argument("--out", required=True, help="output folder (written atomically)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    add_eval_flags(parser)
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="max error of a deploy form relative to the output scale")
    add_runtimes_flag(parser)


def register(sub) -> None:
    parser = sub.add_parser("baseline", help="the compared methods (MobileNetV2, DepthShrinker, "
                            "HURRICANE, ODN), measured like Double-Win",
                            description="Each writes weights, deep/shallow deploy files per runtime, transform.json "
                            "and summary.json, and logs the report's row (docs/methods.md).")
    bsub = parser.add_subparsers(dest="baseline_command", metavar="METHOD", required=True)

    mnv2 = bsub.add_parser("mobilenetv2", help="MobileNetV2 at one width and resolution")
    _common(mnv2)
    mnv2.add_argument("--width", type=float, required=True, help="width multiplier, e.g. 0.5")
    mnv2.add_argument("--resolution", type=resolution_arg, required=True, help="input resolution (px)")
    mnv2.add_argument("--recipe", required=True, type=json_arg,
                      help="recipe (baselines.mobilenetv2.recipe) as JSON or @file")
    mnv2.add_argument("--nproc", type=int, default=1,
                      help="processes (GPUs); >1 relaunches under torchrun")
    mnv2.add_argument("--no-resume", action="store_true", help="ignore a saved training state")
    mnv2.set_defaults(func=_mobilenetv2)

    dsh = bsub.add_parser("depthshrinker", help="shrink a deep-only search result after the fact")
    _common(dsh)
    dsh.add_argument("--checkpoint", required=True, help="elastic supernet checkpoint")
    dsh.add_argument("--arch", required=True, help="deep-only search result (arch JSON)")
    dsh.add_argument("--budget", required=True, help="its budget label, e.g. 40pct (the row's)")
    dsh.add_argument("--linear-fraction", type=float, required=True,
                     help="fraction of searchable blocks whose activations are removed")
    dsh.add_argument("--recipe", required=True, type=json_arg,
                     help="fine-tuning recipe (baselines.depthshrinker.recipe)")
    dsh.set_defaults(func=_depthshrinker)

    hur = bsub.add_parser("hurricane", help="HURRICANE: operator pre-selection, SPOS, two-stage search")
    hsub = hur.add_subparsers(dest="hurricane_command", metavar="STEP", required=True)
    hsup = hsub.add_parser("supernet", help="time and pre-select operators, train stage 1")
    _common(hsup)
    hsup.add_argument("--space", required=True, type=json_arg, help="the params space (macro structure)")
    hsup.add_argument("--settings", required=True, type=json_arg, help="baselines.hurricane")
    hsup.add_argument("--device", default="host", help="device the operators are timed on")
    hsup.add_argument("--measure-settings", type=json_arg, default={},
                      help="timing settings as JSON (warmup, iters, threads)")
    hsup.set_defaults(func=_hurricane_supernet)
    hsea = hsub.add_parser("search", help="two-stage search under one budget, then export")
    _common(hsea)
    hsea.add_argument("--supernet", required=True, help="hurricane supernet.pt")
    hsea.add_argument("--lut", required=True, help="the main latency table (resolves the budgets)")
    hsea.add_argument("--budgets", required=True, type=json_arg, help="the params search.budgets")
    hsea.add_argument("--budget", required=True, help="which budget label, e.g. 40pct")
    hsea.add_argument("--settings", required=True, type=json_arg, help="baselines.hurricane")
    hsea.add_argument("--search-settings", required=True, type=json_arg,
                      help="parent_ratio, mutation_ratio, mutate_prob, mutate_resolution_prob, "
                      "max_tries (the params search section's)")
    hsea.set_defaults(func=_hurricane_search)

    od = bsub.add_parser("odn", help="ODN: progressive depth expansion to a target accuracy")
    _common(od)
    od.add_argument("--backbone", required=True, choices=("resnet18", "mbconv"))
    od.add_argument("--space", type=json_arg, default=None, help="the params space (mbconv backbone)")
    od.add_argument("--resnet-width", type=int, default=64, help="ResNet-18 base width")
    od.add_argument("--resolution", type=resolution_arg, required=True)
    od.add_argument("--start-depth", type=int, default=1, help="blocks at the start")
    od.add_argument("--criterion", required=True, type=json_arg,
                    help="JSON {target_top1, min_delta, max_rounds_per_depth, max_epochs}")
    od.add_argument("--recipe", required=True, type=json_arg,
                    help="recipe of one training round (baselines.odn.recipe)")
    od.set_defaults(func=_odn)
