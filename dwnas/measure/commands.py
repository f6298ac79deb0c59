"""``dwnas measure`` (latency and energy of one model file) and ``dwnas agent serve``.

The work is :func:`dwnas.measure.run.measure` and :func:`dwnas.measure.run.compare`; these
handlers only parse the flags. Top-level imports stay light; torch and the backends load inside
the library functions.
"""

from __future__ import annotations

import argparse
import sys

from dwnas.measure.run import DEFAULT_REMOTE_TIMEOUT_S


def _settings_from_args(args: argparse.Namespace):
    from dwnas.measure.settings import MeasureSettings

    return MeasureSettings(
        device=args.device,
        batch=args.batch,
        throughput_batch=args.throughput_batch,
        warmup=args.warmup,
        iters=args.iters,
        min_seconds=args.min_seconds,
        threads=args.threads,
        channels_last=args.channels_last,
        sysfs_root=args.sysfs_root,
        sample_interval_ms=args.sample_interval_ms,
        total_rail=args.total_rail,
        cuda_index=args.cuda_index,
        trt=not args.no_trt,
        trt_fp16=args.trt_fp16,
    )


def _measure(args: argparse.Namespace) -> int:
    from dwnas.measure.run import check_resolution, measure

    check_resolution(args.resolution)  # before the settings: a bad size is the error reported
    measure(model=args.model, resolution=args.resolution, out=args.out,
            settings=_settings_from_args(args), remote=args.remote, token_file=args.token_file,
            remote_timeout=args.remote_timeout)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dwnas.errors import DwnasError
    from dwnas.measure.agent import AgentConfig, make_server, read_token, token_file_warning
    from dwnas.measure.settings import DEVICES

    if args.device not in DEVICES:
        raise DwnasError(f"--device must be one of {', '.join(DEVICES)}")
    if args.max_bytes <= 0 or args.timeout <= 0:
        raise DwnasError("--max-bytes and --timeout must be > 0")
    token = read_token(args.token_file)
    warning = token_file_warning(args.token_file)
    if warning:
        print(warning, file=sys.stderr)
    config = AgentConfig(
        token=token,
        max_bytes=args.max_bytes,
        job_timeout_s=args.timeout,
        device=args.device,
        sysfs_root=args.sysfs_root,
    )
    server = make_server(args.host, args.port, config)
    host, port = server.server_address[:2]
    if host not in {"127.0.0.1", "::1", "localhost"}:
        print(
            f"warning: listening on {host}, not loopback: traffic (token included) is plain "
            "HTTP; prefer an SSH tunnel",
            file=sys.stderr,
        )
    print(
        f"dwnas agent on http://{host}:{port} (device {args.device}, max {args.max_bytes} bytes, "
        f"job timeout {args.timeout:g} s); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_settings_args(p: argparse.ArgumentParser) -> None:
    """The measurement settings' flags (``dwnas measure`` and ``dwnas compare``)."""
    p.add_argument("--device", choices=["host", "cuda", "jetson"], default="host")
    p.add_argument("--batch", type=int, default=1, help="latency batch size (default 1)")
    p.add_argument(
        "--throughput-batch",
        type=int,
        default=None,
        help="batch of a second, throughput loop (default: same loop as latency)",
    )
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="keep each timed loop running at least this long (energy needs seconds)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch / onnxruntime CPU threads")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--sysfs-root", default="/", help="directory standing in for / for sensors")
    p.add_argument(
        "--sample-interval-ms",
        type=float,
        default=10.0,
        help="power sampling period (INA3221; tegrastats uses >= 100)",
    )
    p.add_argument(
        "--total-rail",
        default=None,
        help="rail holding board power (default VDD_IN / POM_5V_IN, else sum of rails)",
    )
    p.add_argument("--cuda-index", type=int, default=0)
    p.add_argument("--no-trt", action="store_true", help="skip trtexec even if available")
    p.add_argument("--trt-fp16", action="store_true", help="trtexec --fp16")


def parse_models(items: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """``--model LABEL=PATH[@RES]`` items -> (label -> path, label -> its own resolution)."""
    from dwnas.errors import DwnasError
    from dwnas.measure.run import check_resolution

    models, resolutions = {}, {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or label not in ("deep", "shallow", "deep-only") or not path:
            raise DwnasError(f"--model {item!r}: use LABEL=PATH with LABEL deep, shallow or deep-only")
        if label in models:
            raise DwnasError(f"--model {label} given twice")
        path, at, size = path.rpartition("@")
        if not at or not size.isdigit():  # no @RES suffix: the whole text is the path
            path, size = f"{path}{at}{size}", None
        models[label] = path
        if size is not None:
            resolutions[label] = int(size)
            check_resolution(resolutions[label])
    return models, resolutions


def _compare(args: argparse.Namespace) -> int:
    from dwnas.measure.run import check_resolution, compare

    models, resolutions = parse_models(args.model)
    check_resolution(args.resolution)  # before the settings: a bad size is the error reported
    compare(models=models, resolution=args.resolution, out=args.out,
            settings=_settings_from_args(args), resolutions=resolutions, rounds=args.rounds,
            round_iters=args.round_iters, statistic=args.statistic, canary=args.canary,
            remote=args.remote, token_file=args.token_file, remote_timeout=args.remote_timeout)
    return 0


def _add_compare(sub) -> None:
    from dwnas.measure.api import LATENCY_STATISTICS

    p = sub.add_parser(
        "compare",
        help="deep vs shallow (vs deep-only) latency in interleaved rounds, ratios with 95%% CIs",
        description="Load the deploy files of one row into one process, time them in "
        "interleaved rounds (a drift of the machine hits all alike), and write each file's full "
        "measurement and the speed-ups with 95% bootstrap intervals. Files holding the same "
        "graph are timed once; their ratio is 1 by construction.")
    p.add_argument("--model", required=True, nargs="+", metavar="LABEL=PATH[@RES]",
                   help="deep=FILE shallow=FILE [deep-only=FILE@RES] (.pt2 or .onnx); @RES: "
                   "that network's own input size (default --resolution)")
    p.add_argument("--resolution", type=int, required=True, help="square input size in pixels")
    p.add_argument("--out", required=True, help="compare JSON to write")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    p.add_argument("--round-iters", type=int, default=10, help="timed runs per network per round")
    p.add_argument("--canary", default=None, metavar="LUT_JSON",
                   help="latency table whose drift reference joins the rounds: the result's "
                   "canary.drift says how much slower the machine runs now than when profiled")
    p.add_argument("--statistic", default="min", choices=LATENCY_STATISTICS,
                   help="a round's value over its runs (min on a shared machine)")
    add_settings_args(p)
    p.add_argument("--remote", default=None, metavar="HOST:PORT", help="measure on a dwnas agent")
    p.add_argument("--token-file", default=None, help="file holding the agent token")
    p.add_argument("--remote-timeout", type=float, default=DEFAULT_REMOTE_TIMEOUT_S,
                   help="seconds before giving up on the agent")
    p.set_defaults(func=_compare)


def _add_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="latency / throughput / energy of a .pt2, .onnx or .pt model",
        description="Time a torch.export (.pt2), ONNX (.onnx) or TorchScript (.pt) model on this machine "
        "(host CPU, CUDA, Jetson) or on a remote agent; write measure.json.",
    )
    p.add_argument("--model", required=True, help="model file: .pt2 (torch.export), .onnx or .pt (TorchScript)")
    p.add_argument("--resolution", type=int, required=True, help="square input size in pixels")
    p.add_argument("--out", required=True, help="measure.json to write")
    add_settings_args(p)
    p.add_argument("--remote", default=None, metavar="HOST:PORT", help="measure on a dwnas agent")
    p.add_argument("--token-file", default=None, help="file holding the agent token")
    p.add_argument(
        "--remote-timeout",
        type=float,
        default=DEFAULT_REMOTE_TIMEOUT_S,
        help="seconds before giving up on the agent",
    )
    p.set_defaults(func=_measure)


def _add_agent(sub) -> None:
    from dwnas.measure.agent import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_BYTES

    p = sub.add_parser("agent", help="remote measurement agent (run on the device)")
    asub = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    serve = asub.add_parser("serve", help="serve measurements over HTTP, token required")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--token-file", required=True)
    serve.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    serve.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_JOB_TIMEOUT_S,
        help="seconds one measurement may take before it is killed",
    )
    serve.add_argument("--device", default="jetson", help="backend: host, cuda or jetson")
    serve.add_argument("--sysfs-root", default="/")
    serve.set_defaults(func=_serve)


def register(sub) -> None:
    _add_measure(sub)
    _add_compare(sub)
    _add_agent(sub)
