"""``dwnas report``: the paper's tables and figures from the pipeline's own files, into one folder.

The main table, the Pareto and deep-vs-shallow figures, the latency-table checks and the merge
figure need only files under ``results/`` (so a user who got results through ``dvc pull`` can
rebuild them); the training curves come from the training stages' summary files (MLflow is
only a fallback, never required). The work is :func:`dwnas.report.run.run`; this module only
parses the flags.
"""

from __future__ import annotations

import argparse

from dwnas.cli import json_arg


def _report(args: argparse.Namespace) -> int:
    from dwnas.report.run import run

    run(measured=args.measured, out=args.out, space=args.space, lut=args.lut,
        fidelity=args.fidelity, sweep=args.sweep, training_summary=args.training_summary,
        experiment=args.experiment)
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

