"""``dwnas params check``: validate a params file before a long run."""

from __future__ import annotations

import argparse


def _check(args: argparse.Namespace) -> int:
    from dwnas.config import check_all, params_hash, read_params

    params = check_all(read_params(args.params), str(args.params))
    print(f"{args.params}: ok (name={params['name']}, hash={params_hash(params)})")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("params", help="validate params files")
    psub = parser.add_subparsers(dest="params_command", metavar="ACTION", required=True)
    check = psub.add_parser("check", help="validate a params file against the schema")
    check.add_argument("params", help="params YAML file, e.g. params/default.yaml")
    check.set_defaults(func=_check)
