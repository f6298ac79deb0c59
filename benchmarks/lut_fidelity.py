"""Latency-table fidelity on what the pipeline measured, per runtime; prints ONE JSON object.

Reads a finished pipeline run (default ``results/default``): each runtime's latency table
(``profile/<device>/<runtime>/lut.json``) and every row's interleaved measurement
(``measure/<method>/<budget>/<device>/<runtime>.json``). For each measured network of the table's
space (Double-Win, deep-only, DepthShrinker; deep and shallow form, one entry per distinct graph)
it sets the table's prediction against the measured latency, and reports per runtime the share
within +-10% (issue 11's goal: >= 95%) and the MAPE, raw and corrected by the drift of the table's
canary network (timed at profiling and again inside each measurement's rounds), next to the
profile stage's own check on random architectures timed right after the table.

    .venv/bin/python benchmarks/lut_fidelity.py [--results results/default] [--params params/default.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("DWNAS_TRACKING", "0")

from dwnas.config import load_params  # noqa: E402
from dwnas.io import read_json  # noqa: E402
from dwnas.report.fidelity import pipeline_fidelity  # noqa: E402
from dwnas.search.latency import LatencyTable  # noqa: E402
from dwnas.space import Space  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/default", help="a finished run's folder")
    parser.add_argument("--params", default="params/default.yaml", help="its params file")
    args = parser.parse_args()
    results = Path(args.results)
    space = Space.from_params(load_params(args.params)["space"])
    tables, random_archs = {}, {}
    for path in sorted(results.glob("profile/*/*/lut.json")):
        table = LatencyTable.load(path, space=space)
        tables[(table.device, table.runtime)] = table
        fidelity = read_json(path.parent / "lut_fidelity.json")
        random_archs[table.runtime] = {**fidelity["summary"]["all"],
                                       "calibration_scale": table.scale}
    measured = sorted(results.glob("measure/*/*/*/*.json"))
    result = pipeline_fidelity(measured, tables, space)
    goal = 0.95
    print(json.dumps({
        "results": str(results),
        "measured_files": len(measured),
        "pipeline_networks": result["summary"],
        "goal_within_10pct": goal,
        "goal_met": {runtime: s["within_10pct"] >= goal
                     for runtime, s in result["summary"].items()},
        "goal_met_drift_corrected": {
            runtime: (s["drift_corrected"]["within_10pct"] >= goal if s["drift_corrected"]
                      else None) for runtime, s in result["summary"].items()},
        "random_archs": random_archs,
        "outside_the_space": sorted({key.split()[0] for key in result["outside"]}),
        "worst": sorted(result["rows"], key=lambda r: -abs(r["error"]))[:5],
    }, indent=2))


if __name__ == "__main__":
    main()
