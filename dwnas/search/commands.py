"""``dwnas profile`` (device latency table + its fidelity) and ``dwnas search`` (evolutionary).

Argparse shells: each converts its flags and calls its stage's ``run``
(:mod:`dwnas.search.profile`, :mod:`dwnas.search.run`) and logs the stage's MLflow run.
"""

from __future__ import annotations

import argparse

from dwnas.cli import add_eval_flags, json_arg
from dwnas.measure.settings import RUNTIME_FORMATS


def _profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dwnas import track
    from dwnas.search.profile import run

    summary = run(space=args.space, grid=args.grid, num_classes=args.num_classes, out=args.out,
                  device=args.device, runtime=args.runtime, settings=args.settings,
                  statistic=args.statistic, calibration_archs=args.calibration_archs,
                  fidelity_archs=args.fidelity_archs, rounds=args.rounds,
                  round_iters=args.round_iters, round_statistic=args.round_statistic,
                  seed=args.seed, budgets=args.budgets, modes=args.modes)
    out = Path(args.out)
    track.log_stage(f"profile_{args.device}_{args.runtime}",
                    {"device": args.device, "runtime": args.runtime, "grid": summary["grid"],
                     **args.settings},
                    summary, [out / "lut_fidelity.json", out / "lut_fidelity.png", out / "summary.json"])
    return 0


def _search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dwnas import track
    from dwnas.search.run import run

    summary = run(checkpoint=args.checkpoint, prepared=args.prepared, lut=args.lut, out=args.out,
                  budgets=args.budgets, settings=args.settings, mode=args.mode,
                  device=args.device, runtime=args.runtime, include=args.include, seed=args.seed,
                  calib_images=args.calib_images, val_images=args.val_images,
                  eval_batch=args.eval_batch, cache=args.cache)
    out = Path(args.out)
    track.log_stage(f"search_{args.mode}", {"mode": args.mode, "device": args.device,
                                            **args.settings, "budgets": args.budgets},
                    {"results": {budget: {"top1": r["top1"],
                                          "latency_shallow_ms": r["latency_shallow_ms"],
                                          "latency_deep_ms": r["latency_deep_ms"]}
                                 for budget, r in summary["results"].items()}},
                    [out / "pareto.csv", out / "summary.json"])
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def register(sub) -> None:
    prof = sub.add_parser("profile", help="per-block latency table of a space on a device (+ fidelity)")
    prof.add_argument("--space", required=True, type=json_arg, help="space as JSON or @file")
    prof.add_argument("--device", default="host", help="host, cuda or jetson (run it on that device)")
    prof.add_argument("--grid", required=True, type=_int_list,
                      help="network resolutions to time, covering the space's range, e.g. 48,64,80")
    prof.add_argument("--num-classes", type=int, required=True)
    prof.add_argument("--settings", type=json_arg, default={},
                      help="measurement settings as JSON (warmup, iters, threads, ...)")
    prof.add_argument("--calibration-archs", type=int, default=20,
                      help="random archs timed end to end to fit the per-form scale (0 = none)")
    prof.add_argument("--fidelity-archs", type=int, default=30,
                      help="random archs to check predicted vs measured latency (0 = skip)")
    prof.add_argument("--statistic", default="median", choices=("median", "min", "mean", "p90"),
                      help="which statistic of each timing the table holds (profile.statistic)")
    prof.add_argument("--runtime", default="onnxruntime", choices=sorted(RUNTIME_FORMATS),
                      help="the runtime whose deploy files the table times")
    prof.add_argument("--rounds", type=int, default=20,
                      help="whole networks (calibration, fidelity) are timed as dwnas compare "
                      "times them: rounds (measure.rounds) ...")
    prof.add_argument("--round-iters", type=int, default=10, help="... of this many runs (measure.round_iters)")
    prof.add_argument("--round-statistic", default="min", choices=("median", "min", "mean", "p90"),
                      help="... each round's statistic, median over rounds (measure.statistic)")
    prof.add_argument("--seed", type=int, default=0)
    prof.add_argument("--budgets", type=json_arg, default=None,
                      help="search.budgets as JSON: stop with an error if one is below the fastest "
                      "network this table predicts (before any training needs doing)")
    prof.add_argument("--modes", type=lambda v: [m for m in v.split(",") if m],
                      default=["double-win", "deep-only"],
                      help="search modes whose fastest network --budgets is checked against")
    prof.add_argument("--out", required=True, help="output dir: lut.json, lut_fidelity.{json,png}")
    prof.set_defaults(func=_profile)

    srch = sub.add_parser("search", help="evolutionary search under latency budgets",
                          description="For each budget, the most accurate arch whose shallow "
                          "(double-win) or deep (deep-only) form fits.")
    srch.add_argument("--checkpoint", required=True, help="elastic supernet checkpoint")
    srch.add_argument("--prepared", required=True)
    srch.add_argument("--lut", required=True, help="latency table (dwnas profile)")
    srch.add_argument("--device", default="host", help="the device the table must have been made on")
    srch.add_argument("--runtime", default="onnxruntime", choices=sorted(RUNTIME_FORMATS),
                      help="the runtime the table must have been made for (profile.runtime)")
    srch.add_argument("--include", nargs="*", default=None, metavar="DIR",
                      help="arch/<budget>.json folders of another search (deep-only's) whose "
                      "picks compete with this search's finalists at the same budget")
    srch.add_argument("--mode", choices=("double-win", "deep-only"), default="double-win")
    srch.add_argument("--budgets", required=True, type=json_arg,
                      help='JSON {"unit": "fraction"|"ms", "values": [...]}')
    srch.add_argument("--settings", required=True, type=json_arg, help="the params section search")
    srch.add_argument("--seed", type=int, default=0)
    add_eval_flags(srch)
    srch.add_argument("--cache", default=None, help="accuracy cache JSON kept across runs")
    srch.add_argument("--out", required=True, help="output dir: pareto.csv, arch/<budget>.json")
    srch.set_defaults(func=_search)
