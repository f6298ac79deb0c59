"""``dwnas profile`` (device latency table + its fidelity) and ``dwnas search`` (evolutionary)."""

from __future__ import annotations

import argparse

from dwnas.cli import add_eval_flags, json_arg
from dwnas.measure.settings import RUNTIME_FORMATS


def _profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.measure.api import latency_timer
    from dwnas.report.figures import plot_fidelity
    from dwnas.search.latency import calibrate, canary_network, fidelity, profile_space
    from dwnas.space import Space
    from dwnas.transform.export import runtime_file

    space = Space.from_params(args.space)
    grid = sorted(set(args.grid))
    lo, hi = min(space.resolutions()), max(space.resolutions())
    if grid[0] > lo or grid[-1] < hi:
        raise DwnasError(f"--grid {grid} must cover the space's resolutions [{lo}, {hi}]")
    measure = latency_timer(args.device, args.settings, args.statistic, args.runtime)
    table = profile_space(space, args.device, measure, grid, args.num_classes, runtime=args.runtime)
    table.settings.update(args.settings, statistic=args.statistic)
    # whole networks are timed as the measure stage times them (rounds, round statistic)
    network_timer = latency_timer(args.device, args.settings, args.round_statistic, args.runtime,
                                  (args.rounds, args.round_iters))
    table.settings.update(network_estimator={"rounds": args.rounds, "round_iters": args.round_iters,
                                             "statistic": args.round_statistic})
    if args.calibration_archs:
        calibrate(table, space, network_timer, args.num_classes, args.calibration_archs, args.seed)
    from dwnas.measure.backends import make_backend
    from dwnas.measure.settings import MeasureSettings

    table.device_description = make_backend(MeasureSettings(device=args.device)).describe()
    if args.budgets is not None:  # the table the search will use: its budgets are checked now
        from dwnas.search.budgets import check_feasible

        check_feasible(table, space, args.budgets, args.modes)
    with atomic_dir(args.out) as tmp:
        canary_arch, canary = canary_network(space, args.num_classes, args.seed)
        side = canary_arch.resolution
        canary_file = runtime_file(canary, args.runtime, (3, side, side), tmp)
        canary_file = canary_file.rename(tmp / f"canary{canary_file.suffix}")
        table.settings["canary"] = {"file": canary_file.name, "resolution": side,
                                    "latency_ms": network_timer(canary_file, (3, side, side)),
                                    "arch": canary_arch.to_dict()}
        table.save(tmp / "lut.json")
        summary = {"device": args.device, "runtime": args.runtime,
                   "entries": sum(len(v) for v in table.entries.values()),
                   "grid": grid, "call_overhead_ms": table.settings["call_overhead_ms"],
                   "calibration": table.settings.get("calibration"),
                   "canary": table.settings["canary"]}
        if args.fidelity_archs:
            result = fidelity(table, space, network_timer, args.num_classes, args.fidelity_archs,
                              args.seed)
            write_json(tmp / "lut_fidelity.json", result)
            plot_fidelity(result, tmp / "lut_fidelity.png")
            summary["fidelity"] = result["summary"]
        write_json(tmp / "summary.json", summary)
    out = Path(args.out)
    track.log_stage(f"profile_{args.device}_{args.runtime}",
                    {"device": args.device, "runtime": args.runtime, "grid": grid, **args.settings},
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
