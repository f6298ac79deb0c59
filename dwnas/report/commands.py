"""``dwnas report``: the paper's tables and figures from the pipeline's own files, into one folder.

The main table, the Pareto and deep-vs-shallow figures, the latency-table checks and the merge
figure need only files under ``results/`` (so a user who got results through ``dvc pull`` can
rebuild them); the training curves come from the training stages' summary files (MLflow is
only a fallback, never required).
"""

from __future__ import annotations

import argparse

from dwnas.cli import json_arg

CURVE_METRICS = ["loss", "largest_top1", "smallest_top1"]


def _history_frame(history: list[dict]):
    import pandas as pd

    rows = [{"metric": name, "step": int(epoch["epoch"]), "value": float(epoch[name])}
            for epoch in history for name in CURVE_METRICS if epoch.get(name) is not None]
    return pd.DataFrame(rows, columns=["metric", "step", "value"])


def training_summaries(explicit: list[str], sweeps: list[dict]) -> dict[str, str]:
    """stage -> the training stage's summary JSON: given (``--training-summary``), else the
    ``summary.json`` beside each checkpoint a sweep evaluated (the pipeline's layout)."""
    from pathlib import Path

    from dwnas.io import read_json

    found = {}
    candidates = [Path(p) for p in explicit]
    candidates += [Path(s["checkpoint"]).with_name("summary.json") for s in sweeps
                   if s.get("checkpoint")]
    for path in candidates:
        if path.is_file():
            summary = read_json(path)
            if isinstance(summary, dict) and summary.get("stage") in ("supernet", "elastic"):
                found.setdefault(summary["stage"], str(path))
    return found


def _training_histories(summaries: dict[str, str], experiment: str | None) -> dict:
    """Per-epoch history of the supernet and elastic training: from the stages' summary files
    (complete across resumes); from MLflow (``--experiment``) only for a stage without one."""
    from dwnas.io import read_json

    histories = {stage: _history_frame(read_json(path).get("history") or [])
                 for stage, path in summaries.items()}
    missing = [s for s in ("supernet", "elastic") if s not in histories]
    if not missing or not experiment:
        return {s: histories[s] for s in ("supernet", "elastic") if s in histories}
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.report.collect import load_runs, metric_history

    db = track.sqlite_path()
    try:
        if db is not None and not db.is_file():  # never create a store just to look into it
            raise DwnasError(f"no MLflow store at {db}")
        runs = load_runs(experiment, None)
        for stage in missing:
            stage_runs = runs[runs["tags.dwnas.stage"] == f"train_{stage}"] if len(runs) else runs
            if len(stage_runs):
                histories[stage] = metric_history(stage_runs.iloc[-1]["run_id"], CURVE_METRICS)
    except Exception as exc:  # noqa: BLE001 - the store is optional: no curves, not a failure
        reason = str(exc) if isinstance(exc, DwnasError) else f"{type(exc).__name__}: {exc}"
        print(f"report: no MLflow training curves for {', '.join(missing)} "
              f"({reason.splitlines()[0] if reason else ''})", flush=True)
    return {s: histories[s] for s in ("supernet", "elastic") if s in histories}


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
        histories = _training_histories(training_summaries(args.training_summary, sweeps),
                                        args.experiment)
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
    from dwnas import track

    with track.stage_run("report", {"measured": len(args.measured), "out": str(args.out)}) as run:
        track.log_report(run, Path(args.out))
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
    parser.add_argument("--training-summary", action="append", default=[],
                        help="a training stage's summary JSON (repeatable; default: the "
                        "summary.json beside each --sweep's checkpoint)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment: training curves of a stage without a summary "
                        "file (optional; the report never needs the store)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=_report)

