"""The search stage as a library function: :func:`run` searches one mode under every budget.

Data flow: the elastic supernet checkpoint and the prepared images give each candidate's top-1
(BN-recalibrated evaluation, cached in an :class:`~dwnas.train.evaluate.EvalCache` across runs);
the latency table (``dwnas profile``) gives its predicted latency in the form the mode deploys
(shallow for Double-Win, deep for deep-only). For each budget the evolutionary search
(:mod:`dwnas.search.evolution`) proposes, the finalists are re-ranked by the supernet's measured
top-1, and the winner becomes a row of ``pareto.csv`` and ``arch/<budget>.json``.

With ``settings.accuracy: predictor`` a ridge predictor (:mod:`dwnas.search.accuracy`) fitted on
``predictor_samples`` random archs stands in for the supernet during the search; its held-out
Kendall tau decides how many finalists are re-ranked (the top ``final_top_k``, or the whole final
population when the predictor is unreliable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def run(*, checkpoint: str | Path, prepared: str | Path, lut: str | Path, out: str | Path,
        budgets: dict, settings: dict, mode: str = "double-win", device: str = "host",
        runtime: str = "onnxruntime", include: Sequence[str | Path] | None = None, seed: int = 0,
        calib_images: int = 500, val_images: int | None = None, eval_batch: int = 128,
        cache: str | Path | None = None) -> dict:
    """Search ``mode`` under each of ``budgets`` (the params ``search.budgets``) with ``settings``
    (the params section ``search``); write ``out`` atomically (``pareto.csv``, ``evaluated.csv``,
    ``arch/<budget>.json``, ``summary.json``) and return the summary."""
    from dwnas.errors import DwnasError
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.search.budgets import resolve_budgets
    from dwnas.search.evolution import EvolutionarySearch, SearchSettings, deep_only
    from dwnas.search.latency import LatencyTable
    from dwnas.train.evaluate import EvalCache, ImageBank, evaluate_subnet, file_digest

    settings_dict = dict(settings)
    accuracy_mode = settings_dict.pop("accuracy", "supernet")
    predictor_samples = settings_dict.pop("predictor_samples", 100)
    top_k = settings_dict.pop("final_top_k", 5)
    min_tau = settings_dict.pop("min_kendall_tau", 0.6)
    try:
        search_settings = SearchSettings(**settings_dict, seed=seed)
    except TypeError as exc:
        raise DwnasError(f"search settings: {exc}") from exc
    search_settings.check()
    model, ckpt = load_supernet(checkpoint)
    space = model.space
    table = LatencyTable.load(lut, space=space, device=device, runtime=runtime)
    form = "shallow" if mode == "double-win" else "deep"

    def latency(arch) -> float:
        return table.predict(arch, form)

    hi = max(space.resolutions())
    calib = ImageBank.load(prepared, "train", hi, calib_images, seed)
    val = ImageBank.load(prepared, "val", hi, val_images, seed)
    evaluations = EvalCache(cache, file_digest(checkpoint))

    def supernet_top1(arch) -> float:
        hit = evaluations.get(arch, arch.resolution)
        if hit is None:
            hit = evaluate_subnet(model, arch, arch.resolution, calib, val, eval_batch)
            evaluations.put(arch, arch.resolution, hit)
        return hit["top1"]

    search = EvolutionarySearch(space, supernet_top1, latency, search_settings, mode)
    included = _included(space, search, include or [])
    predictor, predictor_report, search_fn = None, None, search
    if accuracy_mode == "predictor":
        predictor, predictor_report = _fit_predictor(space, search, mode, seed, predictor_samples,
                                                     top_k, min_tau)
        search_fn = EvolutionarySearch(space, lambda a: predictor.predict(space, a), latency,
                                       search_settings, mode)
    elif accuracy_mode != "supernet":
        raise DwnasError(f"search.accuracy: use 'supernet' or 'predictor', got {accuracy_mode!r}")

    reference = table.predict(deep_only(space.largest()), "deep")
    resolved = resolve_budgets(budgets, reference)
    rows, archs = [], {}
    for label, budget in resolved.items():
        best = search_fn.run(budget, label=f"{mode} {label}")
        finalists = [best.arch]
        if predictor is not None:
            reliable = predictor_report["holdout_kendall_tau"] >= min_tau
            finalists = (search_fn.final_population[:top_k] if reliable
                         else search_fn.final_population) or [best.arch]
        # Double-Win's space contains deep-only's: its picks compete here too, so that with one
        # evaluator and one latency model Double-Win is never less accurate at a budget
        finalists += [a for a in included.get(label, []) if latency(a) <= budget]
        best_arch = _rerank(finalists, supernet_top1, latency, f"{mode} {label}")
        archs[label] = best_arch
        rows.append(_row(space, table, best_arch, ckpt["num_classes"], mode, label, budget,
                         supernet_top1(best_arch),
                         predictor.predict(space, best_arch) if predictor is not None else None))
    evaluations.save()
    evaluated = _evaluated(evaluations, table)
    summary = {"mode": mode, "device": device, "runtime": runtime,
               "reference_latency_ms": reference,
               "budgets_ms": resolved, "supernet_evaluations": len(evaluated),
               "accuracy": accuracy_mode, "predictor": predictor_report,
               "results": {r["budget"]: {k: v for k, v in r.items() if k != "arch"} for r in rows}}
    _write(Path(out), rows, evaluated, archs, summary)
    if predictor_report is not None:
        print(f"predictor: held-out Kendall tau {predictor_report['holdout_kendall_tau']:.3f} "
              f"(finalists: {predictor_report['finalists']})", flush=True)
    return summary


def _included(space, search, folders: Sequence[str | Path]) -> dict[str, list]:
    """The archs of other searches' ``arch/<budget>.json`` folders, by budget label."""
    from dwnas.space import Arch

    included: dict[str, list] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            arch = Arch.load(path)
            space.validate(arch, source=str(path))
            included.setdefault(path.stem, []).append(search.prepare(arch))
    return included


def _fit_predictor(space, search, mode: str, seed: int, samples_n: int, top_k: int,
                   min_tau: float):
    """A ridge predictor of the supernet's top-1 fitted on ``samples_n`` random archs (the
    supernet evaluates them through ``search``), and its held-out report."""
    import random

    from dwnas.progress import progress
    from dwnas.search.accuracy import RidgePredictor, kendall_tau, rank_correlation

    rng = random.Random(f"predictor:{seed}:{mode}")
    samples = [search.prepare(space.sample(rng)) for _ in range(samples_n)]
    accs = [search.accuracy(a)
            for a in progress(samples, desc=f"{mode} predictor: supernet top-1 of samples")]
    split = max(2, int(0.8 * len(samples)))
    held = RidgePredictor.fit(space, samples[:split], accs[:split])
    tau = kendall_tau([held.predict(space, a) for a in samples[split:]], accs[split:])
    report = {
        "samples": len(samples), "holdout": len(samples) - split,
        "holdout_kendall_tau": tau, "min_kendall_tau": min_tau,
        "holdout_rank_correlation": rank_correlation(
            [held.predict(space, a) for a in samples[split:]], accs[split:]),
        # an unreliable predictor only proposes: the whole final population is re-ranked
        # by the supernet's measured accuracy instead of its top_k
        "finalists": "final population" if tau < min_tau else f"top {top_k}",
    }
    return RidgePredictor.fit(space, samples, accs), report


def _rerank(finalists: list, top1: Callable, latency: Callable, desc: str):
    """The most accurate finalist by the supernet's top-1 (ties: the faster)."""
    from dwnas.progress import progress

    measured = {a.to_json(): top1(a)
                for a in progress(finalists, desc=f"{desc}: supernet top-1 of finalists")}
    return max(finalists, key=lambda a: (measured[a.to_json()], -latency(a)))


def _row(space, table, arch, num_classes: int, mode: str, label: str, budget: float,
         top1: float, top1_predicted: float | None) -> dict:
    """One row of ``pareto.csv``: the budget's pick with its latencies and counts."""
    from dwnas.transform.network import count_arch

    counts = count_arch(space, arch, num_classes)
    return {
        "method": "double-win" if mode == "double-win" else "deep-only",
        "budget": label, "budget_ms": budget, "top1": top1,
        "top1_predicted": top1_predicted,
        "latency_deep_ms": table.predict(arch, "deep"),
        "latency_shallow_ms": table.predict(arch, "shallow"),
        "macs_deep": counts["deep"].macs, "macs_shallow": counts["shallow"].macs,
        "params_deep": counts["deep"].params, "params_shallow": counts["shallow"].params,
        "layers_deep": counts["deep"].depth, "layers_shallow": counts["shallow"].depth,
        "resolution": arch.resolution, "num_linear": arch.num_linear,
        "arch": arch.to_json(),
    }


def _evaluated(evaluations, table) -> list[dict]:
    """Every arch the supernet evaluated under this checkpoint (``evaluated.csv``)."""
    from dwnas.space import Arch

    rows = [{"arch": key.split("|")[1], "top1": value["top1"]}
            for key, value in evaluations.entries.items()
            if key.startswith(evaluations.checkpoint_id)]
    for row in rows:
        arch = Arch.from_json(row["arch"])
        row["latency_deep_ms"] = table.predict(arch, "deep")
        row["latency_shallow_ms"] = table.predict(arch, "shallow")
        row["num_linear"] = arch.num_linear
    return rows


def _write(out: Path, rows: list[dict], evaluated: list[dict], archs: dict, summary: dict) -> None:
    import pandas as pd

    from dwnas.io import atomic_dir, write_json

    with atomic_dir(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp / "pareto.csv", index=False)
        pd.DataFrame(evaluated).to_csv(tmp / "evaluated.csv", index=False)
        (tmp / "arch").mkdir()
        for label, arch in archs.items():
            (tmp / "arch" / f"{label}.json").write_text(arch.to_json(indent=2) + "\n")
        write_json(tmp / "summary.json", summary)
