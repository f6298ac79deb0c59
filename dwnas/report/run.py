"""The report stage as a library function: :func:`run` writes the paper's tables and figures from
the pipeline's own files into one folder.

Data flow: the measured rows (compare JSON files, each beside its transform.json) give the main
table, the Pareto and deep-vs-shallow figures (:mod:`dwnas.report.tables`,
:mod:`dwnas.report.figures`); the latency tables and the profiles' fidelity files give the
latency-table checks (:mod:`dwnas.report.fidelity`) and the merge figure; the sweeps give the
resolution figure; the training stages' summary files give the training curves (MLflow only as a
fallback, never required).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CURVE_METRICS = ["loss", "largest_top1", "smallest_top1"]


def _history_frame(history: list[dict]):
    import pandas as pd

    rows = [{"metric": name, "step": int(epoch["epoch"]), "value": float(epoch[name])}
            for epoch in history for name in CURVE_METRICS if epoch.get(name) is not None]
    return pd.DataFrame(rows, columns=["metric", "step", "value"])


def training_summaries(explicit: list[str], sweeps: list[dict]) -> dict[str, str]:
    """stage -> the training stage's summary JSON: given (``--training-summary``), else the
    ``summary.json`` beside each checkpoint a sweep evaluated (the pipeline's layout)."""
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


def run(*, measured: Sequence[str | Path], out: str | Path, space: dict | None = None,
        lut: Sequence[str | Path] = (), fidelity: Sequence[str | Path] = (),
        sweep: Sequence[str | Path] = (), training_summary: Sequence[str | Path] = (),
        experiment: str | None = None) -> dict:
    """Tables and figures of the ``measured`` rows (compare JSON files) into ``out`` (atomically),
    with the latency tables ``lut`` checked against ``space`` (the params section), the profiles'
    ``fidelity`` files, the ``sweep`` files and the training curves; log the stage and return
    ``summary.json``."""
    import pandas as pd

    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, read_json, write_json
    from dwnas.report import figures
    from dwnas.report.fidelity import pipeline_fidelity
    from dwnas.report.tables import main_table, write_tables
    from dwnas.search.latency import LatencyTable
    from dwnas.space import Space

    table = main_table(measured)
    if table.empty:
        raise DwnasError("no measurements given (--measured): nothing to report")
    checked_space = Space.from_params(space) if space else None
    luts = {}
    for path in lut:
        lut_table = LatencyTable.load(path, space=checked_space)
        luts[(lut_table.device, lut_table.runtime)] = lut_table
    random_sets = {read_json(p).get("runtime", Path(p).parent.name): read_json(p)
                   for p in fidelity}
    sweeps = [read_json(p) for p in sweep]
    with atomic_dir(out) as tmp:
        files = write_tables(table, tmp)
        files += figures.pareto(table, tmp)
        files += figures.deep_vs_shallow(table, tmp)
        if sweeps:
            files += figures.resolution_sweep(sweeps, tmp)
        histories = _training_histories(training_summaries(training_summary, sweeps),
                                        experiment)
        if histories:
            files += figures.training_curves(histories, tmp)
        checks = (pipeline_fidelity(measured, luts, checked_space) if checked_space
                  else {"rows": [], "summary": {}})
        write_json(tmp / "lut_fidelity_pipeline.json", checks)
        files.append(tmp / "lut_fidelity_pipeline.json")
        if random_sets or checks["rows"]:
            files += figures.lut_fidelity(random_sets, checks, tmp)
        if luts:
            files += figures.merge_gains({runtime: t for (_, runtime), t in luts.items()}, tmp)
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
            "lut_fidelity_pipeline": checks["summary"],
        }
        write_json(tmp / "summary.json", summary)
    print(f"report: {len(table)} rows, {len(summary['files'])} files in {Path(out)}")
    from dwnas import track

    with track.stage_run("report", {"measured": len(measured), "out": str(out)}) as stage:
        track.log_report(stage, Path(out))
    return summary
