"""HURRICANE's two pipeline stages: ``run_supernet`` (time and pre-select the operators, train
the supernet's late layers) and ``run_search`` (the two-stage search under one budget, then the
found network's export), each given only its keys of the params section."""

from __future__ import annotations

import math
from pathlib import Path

from dwnas.baselines.hurricane.ops import SKIP, candidate_ops, layers_of
from dwnas.baselines.hurricane.profiling import (
    fastest_op,
    layer_choices,
    path_latency,
    profile_ops,
)
from dwnas.baselines.hurricane.search import PathSearch, PathSpace, sampler, split_layers
from dwnas.baselines.hurricane.supernet import OpSupernet
from dwnas.errors import DwnasError

SUPERNET_KEYS = ("kinds", "kernels", "expands", "se", "keep_ops", "late_stages", "resolution",
                 "recipe")
SEARCH_KEYS = ("population", "generations", "stage2_epochs", "finetune_epochs", "recipe")


def settings_for(section: dict, keys: tuple[str, ...]) -> dict:
    """The part of the params section baselines.hurricane one step needs (each step gets only
    its keys, so that changing a search setting does not retrain the supernet)."""
    if not isinstance(section, dict):
        raise DwnasError("baselines.hurricane: must be a mapping")
    missing = sorted(set(keys) - set(section))
    if missing:
        raise DwnasError(f"baselines.hurricane: missing keys {missing}")
    if "resolution" in keys and section["resolution"] < 16:
        raise DwnasError(f"baselines.hurricane.resolution: must be >= 16 (got {section['resolution']})")
    return section


def run_supernet(setup, *, space: dict, settings: dict, device: str = "host",
                 measure_settings: dict | None = None) -> dict:
    """Stage 1: time every candidate operator at every layer of ``space`` (the params space) on
    ``device``, pre-select the fastest, train the SPOS supernet's late layers; write
    ``setup.out``: ``supernet.pt``, ``ops.json``, ``summary.json``. ``settings``: the params section
    ``baselines.hurricane``; ``measure_settings``: the timing settings (warmup, iters, threads,
    statistic, runtime). Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import fit, recipe_of
    from dwnas.data.loaders import num_classes
    from dwnas.io import atomic_dir, torch_save, write_json
    from dwnas.measure.api import latency_timer
    from dwnas.space import Space
    from dwnas.train.engine import seed_everything

    settings = settings_for(settings, SUPERNET_KEYS)
    recipe = recipe_of(settings["recipe"], "baselines.hurricane.recipe", single_path=True)
    macro = Space.from_params(space)
    resolution = settings["resolution"]
    early, late = split_layers(macro, settings["late_stages"])
    ops = candidate_ops(settings["kinds"], settings["kernels"], settings["expands"], settings["se"])
    n_classes = num_classes(setup.prepared)
    timing = dict(measure_settings or {})
    statistic = timing.pop("statistic", "median")  # the latency table's statistic (profile.*)
    runtime = timing.pop("runtime", None)  # and its runtime: operators timed as deployed
    table = profile_ops(macro, ops, resolution, latency_timer(device, timing, statistic, runtime),
                        n_classes)
    choices = layer_choices(macro, table, settings["keep_ops"])
    defaults = [fastest_op(table, layer, allowed) for layer, allowed
                in zip(layers_of(macro), choices, strict=True)]
    seed_everything(setup.seed)  # the initial weights follow the seed, whatever ran before
    supernet = OpSupernet(macro, choices, n_classes)
    sample = sampler(choices, late, defaults, setup.seed, salt=1)
    params = {"settings": settings, "device": device, "seed": setup.seed}
    with track.stage_run("hurricane_supernet", params) as stage:
        history = fit(supernet, setup.prepared, recipe, resolution, setup.seed,
                      workers=setup.workers, forward=lambda x, step: supernet(x, sample(step)),
                      desc="hurricane stage 1")
        for epoch in history:
            stage.log_metrics(epoch, step=epoch["epoch"])
        meta = {"device": device, "table": table, "early": sorted(early), "late": sorted(late),
                "defaults": defaults, "resolution": resolution, "stage1": history,
                "candidates": [op.name for op in ops]}
        summary = {"device": device, "candidates": len(ops),
                   "kept_per_layer": [len(c) for c in choices], "choices": choices,
                   "late_layers": sorted(late), "early_layers": sorted(early),
                   "space_size_full": math.prod(len(ops) + (not layer.first)
                                                for layer in layers_of(macro)),
                   "space_size_kept": math.prod(len(c) for c in choices),
                   "stage1_epochs": recipe.epochs, "stage1": history}
        out = Path(setup.out)
        with atomic_dir(out) as tmp:
            torch_save(supernet.checkpoint(meta), tmp / "supernet.pt")
            write_json(tmp / "ops.json", {"table": table, "choices": choices, "defaults": defaults})
            write_json(tmp / "summary.json", summary)
        stage.log_metrics({"candidates": len(ops), "stage1_epochs": recipe.epochs})
        stage.log_artifact(out / "summary.json")
    return summary


def run_search(setup, *, supernet_file: str | Path, lut: str | Path, budgets: dict, budget: str,
               settings: dict, search_settings: dict) -> dict:
    """Stage 2: the two-stage search under the budget labelled ``budget`` of ``budgets`` (the
    params ``search.budgets``, resolved against the main latency table ``lut``), training the
    early layers between the two searches and fine-tuning the found path; write ``setup.out``
    (:func:`~dwnas.baselines.common.finish`). ``settings``: the params section
    ``baselines.hurricane``; ``search_settings``: the evolution's other settings (the params
    section ``search``'s). Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import finish, fit, images_seen, recipe_of
    from dwnas.search.budgets import resolve_budgets
    from dwnas.search.evolution import SearchSettings, deep_only
    from dwnas.search.latency import LatencyTable

    settings = settings_for(settings, SEARCH_KEYS)
    supernet, ckpt = OpSupernet.load(supernet_file)
    meta = ckpt["extra"]
    space, table, resolution = supernet.space, meta["table"], int(meta["resolution"])
    early, late, defaults = set(meta["early"]), set(meta["late"]), list(meta["defaults"])
    main_table = LatencyTable.load(lut, space=space, device=meta["device"])
    reference = main_table.predict(deep_only(space.largest()), "deep")
    # a network runs at another speed than the sum of its separately timed parts: apply the main
    # table's one calibration scale, so that a budget means the same measured latency for both
    scale = main_table.scale
    resolved = resolve_budgets(budgets, reference)
    if budget not in resolved:
        raise DwnasError(f"--budget {budget}: not one of the budgets {list(resolved)}")
    budget_ms = resolved[budget]
    try:
        evolution = SearchSettings(population=settings["population"],
                                   generations=settings["generations"],
                                   **search_settings, seed=setup.seed)
    except TypeError as exc:
        raise DwnasError(f"search settings: {exc}") from exc
    data = setup.eval_data(resolution)
    layers = layers_of(space)

    def accuracy(path) -> float:
        return data.accuracy(supernet.extract(path.ops), resolution)["top1"]

    def latency(path) -> float:
        return scale * path_latency(space, table, path.ops)

    def op_ms(i: int, name: str) -> float:
        return 0.0 if name == SKIP else table["positions"][layers[i].position][name]["ms"]

    def search(searched: set[int], fixed: list[str], label: str):
        engine = PathSearch(PathSpace(supernet.choices, searched, fixed), accuracy, latency,
                            evolution, op_ms)
        return engine.run(budget_ms, label=f"hurricane {label} {budget}")

    params = {"budget": budget, "budget_ms": budget_ms, "settings": settings, "seed": setup.seed}
    with track.stage_run("baseline_hurricane", params) as stage:
        first = search(late, defaults, "stage 1")
        stage2 = []
        if settings["stage2_epochs"] > 0:
            recipe2 = recipe_of({**settings["recipe"], "epochs": settings["stage2_epochs"]},
                                "baselines.hurricane.recipe", single_path=True)
            sample = sampler(supernet.choices, early, list(first.arch.ops), setup.seed, salt=2)
            stage2 = fit(supernet, setup.prepared, recipe2, resolution, setup.seed,
                         workers=setup.workers, forward=lambda x, step: supernet(x, sample(step)),
                         desc=f"hurricane stage 2 {budget}")
        second = search(early, list(first.arch.ops), "stage 2")
        path = list(second.arch.ops)
        net = supernet.extract(path)
        finetune = []
        if settings["finetune_epochs"] > 0:
            recipe_ft = recipe_of({**settings["recipe"], "epochs": settings["finetune_epochs"]},
                                  "baselines.hurricane.recipe", single_path=True)
            finetune = fit(net, setup.prepared, recipe_ft, resolution, setup.seed,
                           workers=setup.workers, desc=f"hurricane fine-tune {budget}")
        return finish("hurricane", budget, net, setup, resolution,
                      evaluation=data,
                      description={"resolution": resolution, "path": path,
                                   "layers": [vars(layer) for layer in layers],
                                   "network": net.config()},
                      extra_files={},
                      summary_extra={"budget_ms": budget_ms,
                                     "latency_predicted_ms": latency(second.arch),
                                     "latency_scale": scale,
                                     "path": path, "stage1_top1": first.accuracy,
                                     "stage2_top1": second.accuracy,
                                     "stage2_epochs": settings["stage2_epochs"],
                                     "finetune_epochs": settings["finetune_epochs"],
                                     "stage2": stage2, "finetune": finetune,
                                     "images_seen": images_seen(meta["stage1"], stage2, finetune),
                                     "layers_kept": sum(op != SKIP for op in path)},
                      params=params, run=stage)
