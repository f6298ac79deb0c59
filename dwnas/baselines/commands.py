"""``dwnas baseline mobilenetv2 | depthshrinker | hurricane supernet | hurricane search | odn``.

Every command writes its ``--out`` folder atomically: the weights, ``arch.json`` (a space
architecture) or ``config.json`` (any other network), the deploy files of each runtime
(``deep.pt2`` / ``shallow.pt2``, ``deep.onnx`` / ``shallow.onnx``, exported, verified and evaluated
by Double-Win's own path, :func:`dwnas.transform.deploy.export_network`), ``transform.json`` and ``summary.json``; and logs one MLflow run,
stage ``baseline_<method>``, tagged with the method and the variant (the report's ``budget``).
Settings arrive as JSON (inline or ``@file``), whole params sections, as in ``dwnas train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dwnas.cli import add_eval_flags, add_runtimes_flag, json_arg, relaunch_under_torchrun
from dwnas.config import resolution_arg


def _recipe(section: dict, where: str, *, single_path: bool = False, single_process: bool = True):
    """The recipe of a params section; ``single_path``: one network per step (a static net, SPOS);
    ``single_process``: trained by :func:`~dwnas.baselines.common.fit`, so ``nproc`` must be 1."""
    from dwnas.errors import DwnasError
    from dwnas.train.recipe import Recipe

    if not isinstance(section, dict):
        raise DwnasError(f"{where}: must be a mapping (a training recipe)")
    recipe = Recipe.from_params(section, where=where)
    if single_path and recipe.subnets_per_step != 1:
        raise DwnasError(f"{where}.subnets_per_step: this network trains one path per step "
                         f"(got {recipe.subnets_per_step}); set 1")
    nproc = section.get("nproc", 1)
    if single_process and nproc != 1:
        raise DwnasError(f"{where}.nproc: this baseline trains in one process (got {nproc}); set 1")
    return recipe


def _static_weights(net) -> dict:
    """A static network's weights with the config that rebuilds its structure."""
    return {"format": "dwnas-static", "config": net.config(), "state_dict": net.state_dict()}


def _finish(method: str, variant: str, net, out: Path, resolution: int, args, *, evaluation,
            description: dict, extra_files: dict, summary_extra: dict, params: dict, run=None,
            space_fingerprint: str | None = None) -> dict:
    """Write the output folder (weights, the network's description - ``arch.json`` for an
    architecture of a space, ``config.json`` otherwise -, the deploy files of every runtime,
    transform.json, summary.json) through Double-Win's own export path, which recalibrates,
    exports and evaluates the exported files; log the report's row; return the summary."""
    from dwnas.baselines.common import log, log_row, row_metrics
    from dwnas.io import atomic_dir, torch_save, write_json
    from dwnas.transform.deploy import ROW_KEYS, export_network

    with atomic_dir(out) as tmp:
        for name, writer in extra_files.items():
            writer(tmp / name)
        figures = export_network(net, tmp, resolution, evaluation, args.runtimes, args.tolerance,
                                 args.seed)
        if "weights.pt" not in extra_files:  # the recalibrated weights, as exported
            torch_save(_static_weights(net), tmp / "weights.pt")
        is_arch = set(description) == {"stages", "resolution"}
        write_json(tmp / ("arch.json" if is_arch else "config.json"), description)
        write_json(tmp / "transform.json", {"method": method, "variant": variant, **figures,
                                            "space_fingerprint": space_fingerprint})
        accuracy = {"top1": figures["top1"]["evaluated"], "top5": figures["top5"]}
        summary = {"method": method, "variant": variant, "resolution": int(resolution),
                   "top1": accuracy["top1"], "top5": accuracy["top5"],
                   **{key: figures[key] for key in ROW_KEYS}, **summary_extra}
        write_json(tmp / "summary.json", summary)
    log_row(method, variant, params, {**row_metrics(variant, accuracy, figures),
                                      **_numeric(summary_extra)},
            [out / "summary.json", out / "transform.json"], run)
    log(f"{out}: {method} {variant}: top-1 {accuracy['top1']:.4f} (files: "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["top1"].items() if k != "evaluated")
        + f"), depth {figures['layers_deep']} -> {figures['layers_shallow']}, MACs "
        f"{figures['macs_deep'] / 1e6:.2f} M -> {figures['macs_shallow'] / 1e6:.2f} M, max rel err "
        f"{figures['max_rel_err']:.2e}")
    return summary


def _numeric(data: dict) -> dict:
    """The scalar numbers of a summary section (history lists stay in the JSON)."""
    return {k: v for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def _eval_data(args, resolution: int):
    from dwnas.train.evaluate import EvalData

    return EvalData.load(args.prepared, resolution, args.calib_images, args.val_images, args.seed,
                         args.eval_batch)


# -- MobileNetV2 ------------------------------------------------------------------------------------
def _mobilenetv2(args: argparse.Namespace) -> int:
    relaunched = relaunch_under_torchrun(args)
    if relaunched is not None:
        return relaunched
    import os
    import shutil

    from dwnas import track
    from dwnas.baselines import mobilenetv2 as mnv2
    from dwnas.baselines.common import work_dir
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.train.engine import Trainer, TrainJob

    width, resolution = args.width, args.resolution
    variant = mnv2.variant_label(width, resolution)
    section = mnv2.space_section(width, resolution)
    recipe = _recipe(args.recipe, "baselines.mobilenetv2.recipe", single_path=True,
                     single_process=False)
    out = Path(args.out)
    work = work_dir(out)
    job = TrainJob(stage=f"mobilenetv2 {variant}", prepared=Path(args.prepared),
                   out=work / "weights.pt", summary=work / "train.json", recipe=recipe,
                   seed=args.seed, resolution=(resolution, resolution), space=section,
                   workers=args.workers, calib_images=args.calib_images,
                   val_images=args.val_images, eval_batch=args.eval_batch,
                   resume=not args.no_resume)
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        os.environ["DWNAS_TRACKING"] = "0"
    params = {"width": width, "resolution": resolution, "recipe": args.recipe, "seed": args.seed}
    with track.stage_run("baseline_mobilenetv2", params) as run:
        trainer = Trainer(job, on_epoch=lambda m, step: run.log_metrics(m, step=int(m["epoch"])))
        try:
            trained = trainer.run()
        finally:
            trainer.ctx.close()
        if not main_rank:
            return 0
        supernet, ckpt = load_supernet(job.out)
        arch = supernet.space.largest()
        net = supernet.subnet(arch).eval()
        check = mnv2.torchvision_check(net, width, resolution, ckpt["num_classes"])
        _finish("mobilenetv2", variant, net, out, resolution, args,
                evaluation=_eval_data(args, resolution),
                description=arch.to_dict(),
                extra_files={"weights.pt": lambda p: shutil.copy2(job.out, p)},
                summary_extra={"width": width, "torchvision": check, "epochs": recipe.epochs,
                               "train": trained, "images_seen": trained["images_seen_total"]},
                params=params, run=run)
    shutil.rmtree(work, ignore_errors=True)
    return 0


# -- DepthShrinker ----------------------------------------------------------------------------------
def _depthshrinker(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.baselines import depthshrinker as ds
    from dwnas.baselines.common import fit, images_seen, log
    from dwnas.nn.checkpoint import checkpoint_images_seen, load_supernet
    from dwnas.search.evolution import deep_only
    from dwnas.space import Arch
    from dwnas.train.recipe import linear_alpha

    recipe = _recipe(args.recipe, "baselines.depthshrinker.recipe")
    supernet, ckpt = load_supernet(args.checkpoint)
    found = supernet.space.validate(Arch.load(args.arch), source=str(args.arch))
    deep = deep_only(found)
    n_linear = ds.count_to_linearise(len(deep.blocks), args.linear_fraction)
    resolution = deep.resolution
    data = _eval_data(args, resolution)
    cache: dict[str, float] = {}

    def top1(arch) -> float:
        key = arch.to_json()
        if key not in cache:
            cache[key] = data.accuracy(supernet.subnet(arch), resolution)["top1"]
        return cache[key]

    ranking = ds.rank_blocks(deep, top1)
    chosen = sorted(r["block"] for r in ranking[:n_linear])
    shrunk = ds.with_linear(deep, set(chosen))
    log(f"depthshrinker {args.budget}: activations removed in blocks {chosen} of "
        f"{len(deep.blocks)} (top-1 deep {top1(deep):.4f}, abruptly linearised {top1(shrunk):.4f})")
    teacher = data.calibrate(supernet.subnet(deep), resolution).eval()
    student = supernet.subnet(shrunk, linear_alpha=0.0)
    params = {"arch": deep.to_json(), "checkpoint": str(args.checkpoint),
              "linear_fraction": args.linear_fraction, "recipe": args.recipe, "seed": args.seed}
    with track.stage_run("baseline_depthshrinker", params) as run:
        history = fit(student, args.prepared, recipe, resolution, args.seed, workers=args.workers,
                      teacher=teacher, on_step=lambda e: ds.set_alpha(student, linear_alpha(recipe, e)),
                      desc=f"depthshrinker {args.budget}")
        for epoch in history:
            run.log_metrics(epoch, step=epoch["epoch"])
        ds.set_alpha(student, 1.0)
        # fine-tuning must not make the network worse than abruptly linearised: judged on
        # training images (the calibration sample), never on the validation split
        train_top1 = {"before": data.train_accuracy(supernet.subnet(shrunk), resolution)["top1"],
                      "after": data.train_accuracy(student, resolution)["top1"]}
        kept = train_top1["after"] >= train_top1["before"]
        if not kept:
            student.load_state_dict(supernet.subnet(shrunk).state_dict())
            log(f"depthshrinker {args.budget}: fine-tuning lowered training-image top-1 "
                f"{train_top1['before']:.4f} -> {train_top1['after']:.4f}; kept the network as "
                "linearised")
        _finish("depthshrinker", args.budget, student, Path(args.out), resolution, args,
                evaluation=data, description=shrunk.to_dict(), extra_files={},
                summary_extra={"source_arch": str(args.arch), "linear_blocks": chosen,
                               "num_linear": len(chosen), "blocks": len(deep.blocks),
                               "top1_deep": top1(deep), "top1_before_finetune": top1(shrunk),
                               "ranking": ranking, "finetune": history,
                               "finetune_kept": kept, "finetune_train_top1": train_top1,
                               "epochs": recipe.epochs,
                               "images_seen": checkpoint_images_seen(ckpt) + images_seen(history)},
                params=params, run=run, space_fingerprint=ckpt["fingerprint"])
    return 0


# -- HURRICANE --------------------------------------------------------------------------------------
SUPERNET_KEYS = ("kinds", "kernels", "expands", "se", "keep_ops", "late_stages", "resolution",
                 "recipe")
SEARCH_KEYS = ("population", "generations", "stage2_epochs", "finetune_epochs", "recipe")


def _hurricane_settings(section: dict, keys: tuple[str, ...]) -> dict:
    """The part of the params section baselines.hurricane one step needs (each step gets only
    its keys, so that changing a search setting does not retrain the supernet)."""
    from dwnas.errors import DwnasError

    if not isinstance(section, dict):
        raise DwnasError("baselines.hurricane: must be a mapping")
    missing = sorted(set(keys) - set(section))
    if missing:
        raise DwnasError(f"baselines.hurricane: missing keys {missing}")
    if "resolution" in keys and section["resolution"] < 16:
        raise DwnasError(f"baselines.hurricane.resolution: must be >= 16 (got {section['resolution']})")
    return section


def _hurricane_supernet(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.baselines import hurricane as hc
    from dwnas.baselines.common import fit
    from dwnas.data.loaders import num_classes
    from dwnas.io import atomic_dir, torch_save, write_json
    from dwnas.measure.api import latency_timer
    from dwnas.space import Space
    from dwnas.train.engine import seed_everything

    settings = _hurricane_settings(args.settings, SUPERNET_KEYS)
    recipe = _recipe(settings["recipe"], "baselines.hurricane.recipe", single_path=True)
    space = Space.from_params(args.space)
    resolution = settings["resolution"]
    early, late = hc.split_layers(space, settings["late_stages"])
    ops = hc.candidate_ops(settings["kinds"], settings["kernels"], settings["expands"], settings["se"])
    n_classes = num_classes(args.prepared)
    timing = dict(args.measure_settings)
    statistic = timing.pop("statistic", "median")  # the latency table's statistic (profile.*)
    runtime = timing.pop("runtime", None)  # and its runtime: operators timed as deployed
    table = hc.profile_ops(space, ops, resolution,
                           latency_timer(args.device, timing, statistic, runtime), n_classes)
    choices = hc.layer_choices(space, table, settings["keep_ops"])
    defaults = [hc.fastest_op(table, layer, allowed) for layer, allowed
                in zip(hc.layers_of(space), choices, strict=True)]
    seed_everything(args.seed)  # the initial weights follow the seed, whatever ran before
    supernet = hc.OpSupernet(space, choices, n_classes)
    sample = hc.sampler(choices, late, defaults, args.seed, salt=1)
    params = {"settings": settings, "device": args.device, "seed": args.seed}
    with track.stage_run("hurricane_supernet", params) as run:
        history = fit(supernet, args.prepared, recipe, resolution, args.seed, workers=args.workers,
                      forward=lambda x, step: supernet(x, sample(step)), desc="hurricane stage 1")
        for epoch in history:
            run.log_metrics(epoch, step=epoch["epoch"])
        meta = {"device": args.device, "table": table, "early": sorted(early), "late": sorted(late),
                "defaults": defaults, "resolution": resolution, "stage1": history,
                "candidates": [op.name for op in ops]}
        summary = {"device": args.device, "candidates": len(ops),
                   "kept_per_layer": [len(c) for c in choices], "choices": choices,
                   "late_layers": sorted(late), "early_layers": sorted(early),
                   "space_size_full": _product(len(ops) + (not layer.first)
                                               for layer in hc.layers_of(space)),
                   "space_size_kept": _product(len(c) for c in choices),
                   "stage1_epochs": recipe.epochs, "stage1": history}
        out = Path(args.out)
        with atomic_dir(out) as tmp:
            torch_save(supernet.checkpoint(meta), tmp / "supernet.pt")
            write_json(tmp / "ops.json", {"table": table, "choices": choices, "defaults": defaults})
            write_json(tmp / "summary.json", summary)
        run.log_metrics({"candidates": len(ops), "stage1_epochs": recipe.epochs})
        run.log_artifact(out / "summary.json")
    return 0


def _product(values) -> int:
    total = 1
    for v in values:
        total *= v
    return total


def _hurricane_search(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.baselines import hurricane as hc
    from dwnas.baselines.common import fit, images_seen
    from dwnas.errors import DwnasError
    from dwnas.search.budgets import resolve_budgets
    from dwnas.search.evolution import SearchSettings, deep_only
    from dwnas.search.latency import LatencyTable

    settings = _hurricane_settings(args.settings, SEARCH_KEYS)
    supernet, ckpt = hc.OpSupernet.load(args.supernet)
    meta = ckpt["extra"]
    space, table, resolution = supernet.space, meta["table"], int(meta["resolution"])
    early, late, defaults = set(meta["early"]), set(meta["late"]), list(meta["defaults"])
    main_table = LatencyTable.load(args.lut, space=space, device=meta["device"])
    reference = main_table.predict(deep_only(space.largest()), "deep")
    # a network runs at another speed than the sum of its separately timed parts: apply the main
    # table's one calibration scale, so that a budget means the same measured latency for both
    scale = main_table.scale
    budgets = resolve_budgets(args.budgets, reference)
    if args.budget not in budgets:
        raise DwnasError(f"--budget {args.budget}: not one of the budgets {list(budgets)}")
    budget_ms = budgets[args.budget]
    try:
        search_settings = SearchSettings(population=settings["population"],
                                         generations=settings["generations"],
                                         **args.search_settings, seed=args.seed)
    except TypeError as exc:
        raise DwnasError(f"search settings: {exc}") from exc
    data = _eval_data(args, resolution)
    layers = hc.layers_of(space)

    def accuracy(path) -> float:
        return data.accuracy(supernet.extract(path.ops), resolution)["top1"]

    def latency(path) -> float:
        return scale * hc.path_latency(space, table, path.ops)

    def op_ms(i: int, name: str) -> float:
        return 0.0 if name == hc.SKIP else table["positions"][layers[i].position][name]["ms"]

    def search(searched: set[int], fixed: list[str], label: str):
        engine = hc.PathSearch(hc.PathSpace(supernet.choices, searched, fixed), accuracy, latency,
                               search_settings, op_ms)
        return engine.run(budget_ms, label=f"hurricane {label} {args.budget}")

    params = {"budget": args.budget, "budget_ms": budget_ms, "settings": settings, "seed": args.seed}
    with track.stage_run("baseline_hurricane", params) as run:
        first = search(late, defaults, "stage 1")
        stage2 = []
        if settings["stage2_epochs"] > 0:
            recipe2 = _recipe({**settings["recipe"], "epochs": settings["stage2_epochs"]},
                              "baselines.hurricane.recipe", single_path=True)
            sample = hc.sampler(supernet.choices, early, list(first.arch.ops), args.seed, salt=2)
            stage2 = fit(supernet, args.prepared, recipe2, resolution, args.seed,
                         workers=args.workers, forward=lambda x, step: supernet(x, sample(step)),
                         desc=f"hurricane stage 2 {args.budget}")
        second = search(early, list(first.arch.ops), "stage 2")
        path = list(second.arch.ops)
        net = supernet.extract(path)
        finetune = []
        if settings["finetune_epochs"] > 0:
            recipe_ft = _recipe({**settings["recipe"], "epochs": settings["finetune_epochs"]},
                                "baselines.hurricane.recipe", single_path=True)
            finetune = fit(net, args.prepared, recipe_ft, resolution, args.seed,
                           workers=args.workers, desc=f"hurricane fine-tune {args.budget}")
        _finish("hurricane", args.budget, net, Path(args.out), resolution, args,
                evaluation=data,
                description={"resolution": resolution, "path": path,
                             "layers": [vars(layer) for layer in layers],
                             "network": net.config()},
                extra_files={},
                summary_extra={"budget_ms": budget_ms, "latency_predicted_ms": latency(second.arch),
                               "latency_scale": scale,
                               "path": path, "stage1_top1": first.accuracy,
                               "stage2_top1": second.accuracy,
                               "stage2_epochs": settings["stage2_epochs"],
                               "finetune_epochs": settings["finetune_epochs"],
                               "stage2": stage2, "finetune": finetune,
                               "images_seen": images_seen(meta["stage1"], stage2, finetune),
                               "layers_kept": sum(op != hc.SKIP for op in path)},
                params=params, run=run)
    return 0


# -- ODN --------------------------------------------------------------------------------------------
def _odn(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.baselines import odn
    from dwnas.baselines.common import fit, images_seen, log
    from dwnas.data.loaders import num_classes
    from dwnas.errors import DwnasError
    from dwnas.space import Space
    from dwnas.train.engine import seed_everything
    from dwnas.transform.deploy import deploy_forms

    recipe = _recipe(args.recipe, "baselines.odn.recipe")
    try:
        criterion = odn.Criterion(**args.criterion)
    except TypeError as exc:
        raise DwnasError(f"odn criterion: {exc}") from exc
    criterion.check()
    space = Space.from_params(args.space) if args.space is not None else None
    bb = odn.backbone(args.backbone, space, args.resnet_width)
    if not 1 <= args.start_depth <= bb.full_depth:
        raise DwnasError(f"--start-depth must be in [1, {bb.full_depth}] (got {args.start_depth})")
    n_classes = num_classes(args.prepared)
    resolution = args.resolution
    data = _eval_data(args, resolution)
    seed_everything(args.seed)  # the initial weights follow the seed, whatever ran before
    net = odn.build(bb, args.start_depth, n_classes)
    rounds, previous, at_depth, epochs_used = [], None, 0, 0
    params = {"backbone": args.backbone, "criterion": args.criterion, "recipe": args.recipe,
              "start_depth": args.start_depth, "resolution": resolution, "seed": args.seed}
    with track.stage_run("baseline_odn", params) as run:
        while True:
            depth = odn.depth_of(bb, net)
            history = fit(net, args.prepared, recipe, resolution, args.seed + len(rounds),
                          workers=args.workers, desc=f"odn {args.backbone} depth {depth}")
            epochs_used += recipe.epochs
            at_depth += 1
            accuracy = data.accuracy(net, resolution)
            gain = accuracy["top1"] - previous if previous is not None else float("inf")
            decision = criterion.decide(accuracy["top1"], gain, at_depth, epochs_used,
                                        depth == bb.full_depth)
            rounds.append({"round": len(rounds) + 1, "depth": depth, "top1": accuracy["top1"],
                           "gain": None if previous is None else gain, "decision": decision,
                           "loss": history[-1]["loss"], "images": images_seen(history)})
            run.log_metrics({"depth": depth, "top1": accuracy["top1"]}, step=len(rounds))
            log(f"odn {args.backbone}: round {len(rounds)} at depth {depth}: top-1 "
                f"{accuracy['top1']:.4f} -> {decision}")
            previous = accuracy["top1"]
            if decision.startswith("stop"):
                break
            if decision == "grow":
                net = odn.grow(bb, net, n_classes)
                at_depth = 0
        found = odn.depth_of(bb, net)
        full = odn.build(bb, bb.full_depth, n_classes).eval()
        bytes_found = odn.param_bytes(deploy_forms(net.eval())[0])
        bytes_full = odn.param_bytes(deploy_forms(full)[0])
        _finish("odn", args.backbone, net, Path(args.out), resolution, args, evaluation=data,
                description={"backbone": args.backbone, "depth": found,
                             "full_depth": bb.full_depth, "resolution": resolution,
                             "resnet_width": args.resnet_width if args.backbone == "resnet18" else None,
                             "network": net.config()},
                extra_files={},
                summary_extra={"backbone": args.backbone, "depth_found": found,
                               "full_depth": bb.full_depth, "memory_bytes_found": bytes_found,
                               "memory_bytes_full": bytes_full,
                               "memory_saved": 1.0 - bytes_found / bytes_full,
                               "target_top1": criterion.target_top1,
                               "target_reached": accuracy["top1"] >= criterion.target_top1,
                               "stop_reason": decision.removeprefix("stop:"),
                               "epochs": epochs_used, "rounds": rounds,
                               "images_seen": sum(r["images"] for r in rounds)},
                params=params, run=run)
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
