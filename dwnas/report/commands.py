"""``dwnas report``: tables from ``mlflow.search_runs`` and figures, into one folder."""

from __future__ import annotations

import argparse

from dwnas.measure.api import LATENCY_STATISTICS


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, read_json, write_json
    from dwnas.report import figures
    from dwnas.report.collect import load_runs, metric_history
    from dwnas.report.tables import main_table, measured_keys, write_tables
    from dwnas.search.latency import plot_fidelity

    runs = load_runs(args.experiment, args.params_hash)
    table = main_table(runs, measured_keys(args.measured) if args.measured else None,
                       statistic=args.latency_statistic)
    if table.empty:
        raise DwnasError(f"no transform/measure runs in experiment {args.experiment!r}"
                         f" for params hash {args.params_hash}: nothing to report")
    sweeps = [read_json(p) for p in args.sweep]
    with atomic_dir(args.out) as tmp:
        files = write_tables(table, tmp)
        files += figures.pareto(table, tmp)
        files += figures.deep_vs_shallow(table, tmp)
        if sweeps:
            files += figures.resolution_sweep(sweeps, tmp)
        histories = {}
        for stage in ("train_supernet", "train_elastic"):
            stage_runs = runs[runs["tags.dwnas.stage"] == stage]
            if len(stage_runs):
                histories[stage.removeprefix("train_")] = metric_history(
                    stage_runs.iloc[-1]["run_id"], ["loss", "largest_top1", "smallest_top1"])
        if histories:
            files += figures.training_curves(histories, tmp)
        if args.fidelity:
            for ext in ("png", "pdf"):
                plot_fidelity(read_json(args.fidelity), tmp / f"lut_fidelity.{ext}")
                files.append(tmp / f"lut_fidelity.{ext}")
        summary = {
            "rows": len(table),
            "methods": sorted(table["method"].unique().tolist()),
            "files": sorted(p.name for p in files),
            "best_speedup": float(table["speedup"].max()) if table["speedup"].notna().any() else None,
        }
        write_json(tmp / "summary.json", summary)
    print(f"report: {len(table)} rows, {len(summary['files'])} files in {Path(args.out)}")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("report", help="paper tables (CSV, Markdown, LaTeX) and figures")
    parser.add_argument("--experiment", required=True, help="MLflow experiment, e.g. dwnas-default")
    parser.add_argument("--params-hash", default=None, help="only runs of this params hash")
    parser.add_argument("--measured", nargs="*", default=[],
                        help="measure/<method>/<budget>/<device>/<form>.json files: the table "
                        "holds exactly these rows (latest run of each)")
    parser.add_argument("--sweep", action="append", default=[], help="sweep JSON (repeatable)")
    parser.add_argument("--fidelity", default=None, help="lut_fidelity.json")
    parser.add_argument("--latency-statistic", default="median",
                        choices=LATENCY_STATISTICS,
                        help="which statistic of each measurement's timed iterations the table "
                        "and figures show (params: measure.statistic)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=_report)
