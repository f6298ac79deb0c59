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
    from dwnas.search.latency import (
        calibrate,
        canary_network,
        fidelity,
        plot_fidelity,
        profile_space,
    )
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

    import pandas as pd

    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.nn.counters import count_arch
    from dwnas.progress import progress
    from dwnas.search.accuracy import RidgePredictor, kendall_tau, rank_correlation
    from dwnas.search.budgets import resolve_budgets
    from dwnas.search.evolution import EvolutionarySearch, SearchSettings, deep_only
    from dwnas.search.latency import LatencyTable
    from dwnas.train.evaluate import EvalCache, ImageBank, evaluate_subnet, file_digest

    settings_dict = dict(args.settings)
    accuracy_mode = settings_dict.pop("accuracy", "supernet")
    predictor_samples = settings_dict.pop("predictor_samples", 100)
    top_k = settings_dict.pop("final_top_k", 5)
    min_tau = settings_dict.pop("min_kendall_tau", 0.6)
    try:
        settings = SearchSettings(**settings_dict, seed=args.seed)
    except TypeError as exc:
        raise DwnasError(f"search settings: {exc}") from exc
    settings.check()
    model, ckpt = load_supernet(args.checkpoint)
    space = model.space
    table = LatencyTable.load(args.lut, space=space, device=args.device, runtime=args.runtime)
    form = "shallow" if args.mode == "double-win" else "deep"

    def latency(arch) -> float:
        return table.predict(arch, form)

    hi = max(space.resolutions())
    calib = ImageBank.load(args.prepared, "train", hi, args.calib_images, args.seed)
    val = ImageBank.load(args.prepared, "val", hi, args.val_images, args.seed)
    cache = EvalCache(args.cache, file_digest(args.checkpoint))

    def supernet_top1(arch) -> float:
        hit = cache.get(arch, arch.resolution)
        if hit is None:
            hit = evaluate_subnet(model, arch, arch.resolution, calib, val, args.eval_batch)
            cache.put(arch, arch.resolution, hit)
        return hit["top1"]

    search = EvolutionarySearch(space, supernet_top1, latency, settings, args.mode)
    included = {}
    for folder in args.include or []:
        from dwnas.space import Arch

        for path in sorted(Path(folder).glob("*.json")):
            arch = Arch.load(path)
            space.validate(arch, source=str(path))
            included.setdefault(path.stem, []).append(search.prepare(arch))
    predictor_report = None
    if accuracy_mode == "predictor":
        import random

        rng = random.Random(f"predictor:{args.seed}:{args.mode}")
        samples = [search.prepare(space.sample(rng)) for _ in range(predictor_samples)]
        accs = [search.accuracy(a)
                for a in progress(samples, desc=f"{args.mode} predictor: supernet top-1 of samples")]
        split = max(2, int(0.8 * len(samples)))
        held = RidgePredictor.fit(space, samples[:split], accs[:split])
        tau = kendall_tau([held.predict(space, a) for a in samples[split:]], accs[split:])
        predictor_report = {
            "samples": len(samples), "holdout": len(samples) - split,
            "holdout_kendall_tau": tau, "min_kendall_tau": min_tau,
            "holdout_rank_correlation": rank_correlation(
                [held.predict(space, a) for a in samples[split:]], accs[split:]),
            # an unreliable predictor only proposes: the whole final population is re-ranked
            # by the supernet's measured accuracy instead of its top_k
            "finalists": "final population" if tau < min_tau else f"top {top_k}",
        }
        predictor = RidgePredictor.fit(space, samples, accs)
        search_fn = EvolutionarySearch(space, lambda a: predictor.predict(space, a), latency,
                                       settings, args.mode)
    elif accuracy_mode == "supernet":
        search_fn = search
    else:
        raise DwnasError(f"search.accuracy: use 'supernet' or 'predictor', got {accuracy_mode!r}")

    reference = table.predict(deep_only(space.largest()), "deep")
    budgets = resolve_budgets(args.budgets, reference)
    rows, archs = [], {}
    for label, budget in budgets.items():
        best = search_fn.run(budget, label=f"{args.mode} {label}")
        finalists = [best.arch]
        if search_fn is not search:
            reliable = predictor_report["holdout_kendall_tau"] >= min_tau
            finalists = (search_fn.final_population[:top_k] if reliable
                         else search_fn.final_population) or [best.arch]
        # Double-Win's space contains deep-only's: its picks compete here too, so that with one
        # evaluator and one latency model Double-Win is never less accurate at a budget
        finalists += [a for a in included.get(label, []) if latency(a) <= budget]
        top1 = {a.to_json(): supernet_top1(a)
                 for a in progress(finalists, desc=f"{args.mode} {label}: supernet top-1 of finalists")}
        best_arch = max(finalists, key=lambda a: (top1[a.to_json()], -latency(a)))
        counts = count_arch(space, best_arch, ckpt["num_classes"])
        archs[label] = best_arch
        rows.append({
            "method": "double-win" if args.mode == "double-win" else "deep-only",
            "budget": label, "budget_ms": budget, "top1": supernet_top1(best_arch),
            "top1_predicted": (predictor.predict(space, best_arch)
                               if accuracy_mode == "predictor" else None),
            "latency_deep_ms": table.predict(best_arch, "deep"),
            "latency_shallow_ms": table.predict(best_arch, "shallow"),
            "macs_deep": counts["deep"].macs, "macs_shallow": counts["shallow"].macs,
            "params_deep": counts["deep"].params, "params_shallow": counts["shallow"].params,
            "layers_deep": counts["deep"].depth, "layers_shallow": counts["shallow"].depth,
            "resolution": best_arch.resolution, "num_linear": best_arch.num_linear,
            "arch": best_arch.to_json(),
        })
    cache.save()
    evaluated = [
        {"arch": key.split("|")[1], "top1": value["top1"]} for key, value in cache.entries.items()
        if key.startswith(cache.checkpoint_id)
    ]
    from dwnas.space import Arch

    for row in evaluated:
        arch = Arch.from_json(row["arch"])
        row["latency_deep_ms"] = table.predict(arch, "deep")
        row["latency_shallow_ms"] = table.predict(arch, "shallow")
        row["num_linear"] = arch.num_linear
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp / "pareto.csv", index=False)
        pd.DataFrame(evaluated).to_csv(tmp / "evaluated.csv", index=False)
        (tmp / "arch").mkdir()
        for label, arch in archs.items():
            (tmp / "arch" / f"{label}.json").write_text(arch.to_json(indent=2) + "\n")
        summary = {"mode": args.mode, "device": args.device, "runtime": args.runtime,
                   "reference_latency_ms": reference,
                   "budgets_ms": budgets, "supernet_evaluations": len(evaluated),
                   "accuracy": accuracy_mode, "predictor": predictor_report,
                   "results": {r["budget"]: {k: v for k, v in r.items() if k != "arch"}
                               for r in rows}}
        write_json(tmp / "summary.json", summary)
    if predictor_report is not None:
        print(f"predictor: held-out Kendall tau {predictor_report['holdout_kendall_tau']:.3f} "
              f"(finalists: {predictor_report['finalists']})", flush=True)
    track.log_stage(f"search_{args.mode}", {"mode": args.mode, "device": args.device,
                                            **args.settings, "budgets": args.budgets},
                    {"results": {r["budget"]: {"top1": r["top1"],
                                               "latency_shallow_ms": r["latency_shallow_ms"],
                                               "latency_deep_ms": r["latency_deep_ms"]}
                                 for r in rows}},
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
