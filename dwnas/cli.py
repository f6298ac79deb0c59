"""The ``dwnas`` command: one sub-command per pipeline stage.

Each stage lives in its own ``commands.py`` module exposing ``register(subparsers)``. Those modules
keep their top-level imports light (no torch, no mlflow) so that ``dwnas --help`` stays instant;
heavy imports happen inside the handler. A handler raises :class:`DwnasError` for bad input; this
module turns it into ``error: ...`` on stderr (one line per problem) and exit status 2. An output
that cannot be written (permission denied, disk full, read-only file system) is bad input too: it
becomes ``error: <path>: ...``, exit status 2, not a traceback.

The helpers every stage's parser shares live here too: :func:`json_arg` (a params section as JSON
or ``@file``), :func:`add_eval_flags` (the evaluation flags), :func:`add_runtimes_flag` and
:func:`relaunch_under_torchrun` (``--nproc N``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

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


# -- helpers of the stages' parsers ----------------------------------------------------------------
def json_arg(text: str):
    """Parse an inline JSON value or ``@path`` to a JSON file (argparse type)."""
    try:
        if text.startswith("@"):
            return json.loads(Path(text[1:]).read_text())
        return json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text[:80]}") from exc


def add_eval_flags(parser: argparse.ArgumentParser, *,
                   calib_help: str = "training images to recalibrate BN before each evaluation",
                   ) -> None:
    """The evaluation flags (``--calib-images``, ``--val-images``, ``--eval-batch``) of every
    command that evaluates a network, as :class:`~dwnas.train.evaluate.EvalData` reads them."""
    parser.add_argument("--calib-images", type=int, default=500, help=calib_help)
    parser.add_argument("--val-images", type=int, default=None, help="limit validation images")
    parser.add_argument("--eval-batch", type=int, default=128, help="images per evaluation batch")


def add_runtimes_flag(parser: argparse.ArgumentParser) -> None:
    from dwnas.measure.settings import RUNTIME_FORMATS

    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIME_FORMATS),
                        choices=sorted(RUNTIME_FORMATS),
                        help="deployment runtimes to export for (default: all)")


def relaunch_under_torchrun(args: argparse.Namespace) -> int | None:
    """With ``--nproc N`` > 1 outside torchrun, run this same command under torchrun and return
    its exit status; None when this process is to do the work itself."""
    if args.nproc <= 1 or "LOCAL_RANK" in os.environ:
        return None
    argv = [a for a in sys.argv[1:]]
    i = argv.index("--nproc")
    del argv[i:i + 2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc}", "-m", "dwnas", *argv]
    return subprocess.call(cmd)


# -- the command -----------------------------------------------------------------------------------
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
