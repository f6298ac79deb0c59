"""The ``dwnas`` command: one sub-command per pipeline stage.

Each stage lives in its own ``commands.py`` module exposing ``register(subparsers)``. Those modules
keep their top-level imports light (no torch, no mlflow) so that ``dwnas --help`` stays instant;
heavy imports happen inside the handler. A handler raises :class:`DwnasError` for bad input; this
module turns it into ``error: ...`` on stderr (one line per problem) and exit status 2. An output
that cannot be written (permission denied, disk full, read-only file system) is bad input too: it
becomes ``error: <path>: ...``, exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dwnas import __version__, track
from dwnas.errors import DwnasError
from dwnas.io import WRITE_ERRNOS
from dwnas.pipeline import follow_runner

# Modules that register sub-commands, in the order they appear in ``dwnas --help``.
COMMAND_MODULES = [
    "dwnas.data.commands",
    "dwnas.nn.commands",  # supernet init
    "dwnas.train.commands",  # train supernet / elastic / sweep
    "dwnas.search.commands",  # profile, search
    "dwnas.transform.commands",  # transform
    "dwnas.measure.commands",  # measure, agent
    "dwnas.baselines.commands",  # baseline mobilenetv2 / depthshrinker / hurricane / odn
    "dwnas.report.commands",  # report
    "dwnas.config_commands",
    "dwnas.pipeline",  # run: snakemake, restartable after a kill
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwnas",
        description="Double-Win NAS reproducibility pipeline: data, training, search, "
        "deep-to-shallow transform, latency/energy measurement, report.",
    )
    parser.add_argument("--version", action="version", version=f"dwnas {__version__}")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="extra MLflow tag on this stage's run, e.g. --tag method=double-win "
                        "(repeatable; the pipeline tags method, budget, device, form)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _write_error(exc: OSError) -> str | None:
    """``<path>: <reason>`` for a permission/disk-full/read-only OSError, else None (a bug)."""
    if exc.errno not in WRITE_ERRNOS and not isinstance(exc, PermissionError):
        return None
    reason = WRITE_ERRNOS.get(exc.errno, exc.strerror or "permission denied")
    where = exc.filename if exc.filename is not None else "<unknown path>"
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {reason}"


def _remove_stale_outputs(args: argparse.Namespace) -> None:
    """A stage's first act: remove the temporaries a killed run of it left beside its outputs."""
    from dwnas.io import remove_stale

    for name in ("out", "summary"):
        value = getattr(args, name, None)
        if isinstance(value, str | os.PathLike) and str(value):
            remove_stale(value)


def _check_outputs_writable(args: argparse.Namespace) -> None:
    """Before any work: an output that cannot be written (read-only or full folder, a parent that
    is a file) is one ``error:`` line naming it now, not a traceback at the first save."""
    from dwnas.io import check_writable

    for name in ("out", "summary"):
        value = getattr(args, name, None)
        if isinstance(value, str | os.PathLike) and str(value):
            check_writable(value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    follow_runner()  # a stage of `dwnas run` stops when that run is killed
    try:
        track.set_extra_tags(args.tag)
        _remove_stale_outputs(args)
        _check_outputs_writable(args)
        track.begin_command(args, sys.argv[1:] if argv is None else argv)
        result = args.func(args)
    except DwnasError as exc:
        track.end_command("FAILED")
        lines = exc.error_lines() if hasattr(exc, "error_lines") else [str(exc)]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:
        track.end_command("FAILED")
        message = _write_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        track.end_command("KILLED")
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:
        track.end_command("FAILED")
        raise
    track.end_command("FINISHED" if not result else "FAILED")
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
