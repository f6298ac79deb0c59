"""``dwnas report``: the paper's tables and figures from the pipeline's own files, into one folder.

The main table, the Pareto and deep-vs-shallow figures, the latency-table checks and the merge
figure need only files under ``results/`` (so a user who got results through ``dvc pull`` can
rebuild them); the training curves come from MLflow when its store has the runs.
"""

from __future__ import annotations

import argparse

from dwnas.train.commands import json_arg


def _training_histories(experiment: str | None) -> dict:
    """Per-epoch history of the last supernet and elastic runs, or {} without a store."""
    if not experiment:
        return {}
    from dwnas.errors import DwnasError
    from dwnas.report.collect import load_runs, metric_history

    try:
        runs = load_runs(experiment, None)
    except DwnasError as exc:
        print(f"report: no training curves ({exc})", flush=True)
        return {}
    histories = {}
    for stage in ("train_supernet", "train_elastic"):
        stage_runs = runs[runs["tags.dwnas.stage"] == stage] if len(runs) else runs
        if len(stage_runs):
            histories[stage.removeprefix("train_")] = metric_history(
                stage_runs.iloc[-1]["run_id"], ["loss", "largest_top1", "smallest_top1"])
    return histories


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, read_json, write_json
    from dwnas.report import figures
    from dwnas.report.fidelity import pipeline_fidelity
    from dwnas.report.tables import main_table, write_tables
    from dwnas.search.latency import LatencyTable
    from dwnas.space import Space

    table = main_table(args.measured)
    if table.empty:
        raise DwnasError("no measurements given (--measured): nothing to report")
    space = Space.from_params(args.space) if args.space else None
    luts = {}
    for path in args.lut:
        lut = LatencyTable.load(path, space=space)
        luts[(lut.device, lut.runtime)] = lut
    random_sets = {read_json(p).get("runtime", Path(p).parent.name): read_json(p)
                   for p in args.fidelity}
    sweeps = [read_json(p) for p in args.sweep]
    with atomic_dir(args.out) as tmp:
        files = write_tables(table, tmp)
        files += figures.pareto(table, tmp)
        files += figures.deep_vs_shallow(table, tmp)
        if sweeps:
            files += figures.resolution_sweep(sweeps, tmp)
        histories = _training_histories(args.experiment)
        if histories:
            files += figures.training_curves(histories, tmp)
        fidelity = pipeline_fidelity(args.measured, luts, space) if space else {"rows": [],
                                                                                 "summary": {}}
        write_json(tmp / "lut_fidelity_pipeline.json", fidelity)
        files.append(tmp / "lut_fidelity_pipeline.json")
        if random_sets or fidelity["rows"]:
            files += figures.lut_fidelity(random_sets, fidelity, tmp)
        if luts:
            files += figures.merge_gains({runtime: lut for (_, runtime), lut in luts.items()}, tmp)
        speedups = table["speedup"].dropna()
        # the exported files against the reported top-1 (issue 11: within 0.2 points)
        gaps = pd.concat([(table["top1_deep_file"] - table["top1"]).abs(),
                          (table["top1_shallow_file"] - table["top1"]).abs()]).dropna()
        summary = {
            "rows": len(table),
            "methods": sorted(table["method"].unique().tolist()),
            "runtimes": sorted(table["runtime"].unique().tolist()),
            "files": sorted(p.name for p in files),
            "best_speedup": float(speedups.max()) if len(speedups) else None,
            "max_top1_gap_files": float(gaps.max()) if len(gaps) else None,
            "lut_fidelity_pipeline": fidelity["summary"],
        }
        write_json(tmp / "summary.json", summary)
    print(f"report: {len(table)} rows, {len(summary['files'])} files in {Path(args.out)}")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("report", help="paper tables (CSV, Markdown, LaTeX) and figures")
    parser.add_argument("--measured", nargs="+", required=True,
                        help="measure/<method>/<budget>/<device>/<runtime>.json files (dwnas "
                        "compare): one table row each, beside its transform.json")
    parser.add_argument("--space", default=None, type=json_arg,
                        help="the params space (JSON or @file): checks the latency tables")
    parser.add_argument("--lut", action="append", default=[],
                        help="a latency table (lut.json; repeatable, one per runtime)")
    parser.add_argument("--fidelity", action="append", default=[],
                        help="a profile's lut_fidelity.json (random archs; repeatable)")
    parser.add_argument("--sweep", action="append", default=[], help="sweep JSON (repeatable)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment for the training curves (optional)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=_report)

