"""Deep vs shallow (vs deep-only) latency, timed side by side: ratios with bootstrap intervals.

Two timings of one network taken minutes apart differ by more than a merge saves on a shared
machine whose speed drifts. So the networks of one row are loaded into one process and timed in
interleaved rounds (each round times every network ``round_iters`` times, in a rotating order): a
drift hits all of them alike. A round's value is its ``statistic`` over its iterations; a ratio
is the ratio of the networks' medians over rounds, and its 95% interval comes from a paired
bootstrap over rounds.

Two files that hold the same graph with the same weights (:func:`graph_digest`) are one network:
it is timed once and its ratio is exactly 1, by construction, not by a second timing.

Each distinct file is also measured once in full (:meth:`Backend.measure`: latency, throughput,
energy), as ``dwnas measure`` would.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.measure.settings import MeasureSettings

FORMAT = "dwnas-compare"
RATIOS = {  # name -> (numerator, denominator): how many times faster the denominator runs
    "speedup": ("deep", "shallow"),
    "speedup_vs_deep_only": ("deep-only", "shallow"),
}


def graph_digest(path: str | Path) -> str:
    """sha256 over what a file computes (ops and weights), not how the exporter laid it out."""
    from dwnas.measure.models import _first_line, model_format

    path = Path(path)
    fmt = model_format(path)
    try:
        return _graph_digest(path, fmt)
    except Exception as exc:  # onnx / torch raise their own types for a damaged file
        raise DwnasError(f"{path}: cannot load as {fmt} ({_first_line(exc)})") from exc


def _graph_digest(path: Path, fmt: str) -> str:
    digest = hashlib.sha256(fmt.encode())
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        for node in graph.node:
            digest.update(node.op_type.encode())
            digest.update(repr([(a.name, onnx.helper.get_attribute_value(a))
                                for a in node.attribute]).encode())
        for init in sorted(graph.initializer, key=lambda t: t.name):
            digest.update(onnx.numpy_helper.to_array(init).tobytes())
    elif fmt == "torch-export":
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
        digest.update(program.graph_module.code.encode())
        for name, tensor in sorted(program.state_dict.items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def bootstrap_ratio(numerator: Sequence[float], denominator: Sequence[float],
                    resamples: int = 2000, seed: int = 0) -> dict:
    """median(numerator) / median(denominator) over paired rounds, with a 95% percentile
    bootstrap interval (rounds resampled in pairs)."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("bootstrap_ratio needs paired, non-empty rounds")
    rng = random.Random(seed)
    n = len(numerator)
    estimates = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        estimates.append(statistics.median(numerator[i] for i in idx)
                         / statistics.median(denominator[i] for i in idx))
    estimates.sort()
    return {"ratio": statistics.median(numerator) / statistics.median(denominator),
            "ci95": [estimates[int(0.025 * resamples)], estimates[int(0.975 * resamples) - 1]],
            "rounds": n, "identical": False}


def identical_ratio(rounds: int) -> dict:
    return {"ratio": 1.0, "ci95": [1.0, 1.0], "rounds": rounds, "identical": True}


def _round_value(durations_ns: list[int], statistic: str) -> float:
    from dwnas.measure.stats import latency_stats

    return float(latency_stats(durations_ns)[statistic])


def rounds_latency(model, input_shape, settings: MeasureSettings, rounds: int, round_iters: int,
                   statistic: str) -> float:
    """One network's latency by ``dwnas compare``'s estimator, without a partner: after warm-up,
    ``rounds`` rounds of ``round_iters`` runs, each round's ``statistic``, their median. The
    latency table's end-to-end calibration uses it, so that the table predicts what the
    pipeline's measurements report (a min over 30 runs sits below the median over rounds of a
    min over 10)."""
    import torch

    from dwnas.measure.backends import batch_shape, make_backend, timed_loop

    backend = make_backend(settings)
    threads = settings.threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with backend.prepare(settings):
            runner = backend.runner(model, settings, threads)
            x = runner.make_input(batch_shape(input_shape, settings.batch), settings.seed)
            with runner.context():
                for _ in range(settings.warmup):
                    runner(x)
                backend.synchronize()
                values = [_round_value(timed_loop(lambda: runner(x), backend.synchronize,
                                                  round_iters, 0.0)[0], statistic)
                          for _ in range(rounds)]
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(values)


def compare_files(models: Mapping[str, str | Path], resolution: int,
                  settings: MeasureSettings, rounds: int = 20, round_iters: int = 10,
                  statistic: str = "min", resolutions: Mapping[str, int] | None = None,
                  canary: Mapping | None = None) -> dict:
    """Measure ``models`` (label -> file; labels among deep, shallow, deep-only) side by side,
    each at ``resolutions[label]`` (default ``resolution``: deep-only's network at a budget can
    have another input size than Double-Win's).

    ``canary`` (``{"file", "resolution", "latency_ms"}``, from :func:`read_canary`) is the latency
    table's drift reference: it joins the interleaved rounds (no full measurement), and the
    result's ``canary.drift`` = its latency now / when the table was profiled."""
    from dwnas.measure.api import LATENCY_STATISTICS
    from dwnas.measure.backends import batch_shape, make_backend, timed_loop
    from dwnas.progress import progress

    if statistic not in LATENCY_STATISTICS:
        raise DwnasError(f"compare: statistic must be one of {LATENCY_STATISTICS}, got {statistic!r}")
    if rounds < 2 or round_iters < 1:
        raise DwnasError(f"compare: need rounds >= 2 and round_iters >= 1 (got {rounds}, {round_iters})")
    paths = {label: Path(p) for label, p in models.items()}
    for label, path in paths.items():
        if not path.is_file():
            raise DwnasError(f"{path}: model file not found (--model {label}=...)")
    digests = {label: graph_digest(path) for label, path in paths.items()}
    first_of: dict[str, str] = {}
    for label in paths:
        first_of.setdefault(digests[label], label)
    distinct = list(dict.fromkeys(first_of[digests[label]] for label in paths))

    import torch

    backend = make_backend(settings)
    size = {label: int((resolutions or {}).get(label, resolution)) for label in paths}
    full = {label: backend.measure(paths[label], (3, size[label], size[label]), settings)
            for label in distinct}
    timed = dict(paths)  # what the rounds time: the distinct networks, and the canary
    if canary is not None:
        timed["canary"] = Path(canary["file"])
        size["canary"] = int(canary["resolution"])
        distinct = [*distinct, "canary"]
    threads = settings.threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    values: dict[str, list[float]] = {label: [] for label in distinct}
    try:
        with backend.prepare(settings):
            runners = {label: backend.runner(timed[label], settings, threads) for label in distinct}
            inputs = {label: runners[label].make_input(
                batch_shape((3, size[label], size[label]), settings.batch), settings.seed)
                for label in distinct}
            with contextlib.ExitStack() as stack:
                for runner in runners.values():
                    stack.enter_context(runner.context())
                for label in distinct:
                    for _ in range(settings.warmup):
                        runners[label](inputs[label])
                backend.synchronize()
                for r in progress(range(rounds), desc="interleaved rounds"):
                    order = distinct[r % len(distinct):] + distinct[:r % len(distinct)]
                    for label in order:
                        runner, x = runners[label], inputs[label]
                        durations, _ = timed_loop(lambda runner=runner, x=x: runner(x),
                                                  backend.synchronize, round_iters, 0.0)
                        values[label].append(_round_value(durations, statistic))
    finally:
        torch.set_num_threads(previous_threads)
    forms = {}
    for label, path in paths.items():
        source = first_of[digests[label]]
        forms[label] = {"file": str(path), "resolution": size[label],
                        "graph_digest": digests[label],
                        "same_graph_as": None if source == label else source,
                        "rounds_ms": values[source],
                        "latency_ms": statistics.median(values[source]),
                        "measure": full[source]}
    ratios = {}
    for name, (num, den) in RATIOS.items():
        if num not in paths or den not in paths:
            continue
        if digests[num] == digests[den]:
            ratios[name] = identical_ratio(rounds)
        else:
            ratios[name] = bootstrap_ratio(values[first_of[digests[num]]],
                                           values[first_of[digests[den]]])
    result = {"format": FORMAT, "resolution": int(resolution), "statistic": statistic,
              "rounds": rounds, "round_iters": round_iters, "settings": settings.to_dict(),
              "backend": backend.name, "device": backend.describe(), "forms": forms,
              "ratios": ratios}
    if canary is not None:
        measured = statistics.median(values["canary"])
        result["canary"] = {"file": str(canary["file"]), "resolution": size["canary"],
                            "profiled_ms": float(canary["latency_ms"]), "measured_ms": measured,
                            "rounds_ms": values["canary"],
                            "drift": measured / float(canary["latency_ms"])}
    return result


def read_canary(lut_path: str | Path) -> dict:
    """The drift reference a latency table was profiled with: its file (beside the table),
    resolution and latency by the compare estimator."""
    from dwnas.io import read_json

    lut_path = Path(lut_path)
    entry = (read_json(lut_path).get("settings") or {}).get("canary")
    if not entry:
        raise DwnasError(f"{lut_path}: latency table has no canary (profile it again with this "
                         "version of dwnas profile)")
    path = lut_path.parent / entry["file"]
    if not path.is_file():
        raise DwnasError(f"{path}: the latency table's canary file is missing")
    return {**entry, "file": path}


def compare_remote(models: Mapping[str, str | Path], resolution: int, measure_one,
                   statistic: str = "min", resolutions: Mapping[str, int] | None = None) -> dict:
    """The same document for a remote agent, which measures one file per request: each distinct
    file is measured once; ratios are of the files'
    ``statistic`` and carry no interval, since the timings are not interleaved.
    ``measure_one(path, resolution) -> measure.json``."""
    paths = {label: Path(p) for label, p in models.items()}
    digests = {label: graph_digest(path) for label, path in paths.items()}
    first_of: dict[str, str] = {}
    for label in paths:
        first_of.setdefault(digests[label], label)
    size = {label: int((resolutions or {}).get(label, resolution)) for label in paths}
    full = {label: measure_one(paths[label], size[label])
            for label in dict.fromkeys(first_of.values())}
    forms = {}
    for label, path in paths.items():
        source = first_of[digests[label]]
        forms[label] = {"file": str(path), "resolution": size[label],
                        "graph_digest": digests[label],
                        "same_graph_as": None if source == label else source, "rounds_ms": None,
                        "latency_ms": full[source]["latency_ms"][statistic], "measure": full[source]}
    ratios = {}
    for name, (num, den) in RATIOS.items():
        if num in paths and den in paths:
            ratios[name] = (identical_ratio(0) if digests[num] == digests[den] else
                            {"ratio": forms[num]["latency_ms"] / forms[den]["latency_ms"],
                             "ci95": None, "rounds": 0, "identical": False,
                             "ci_reason": "remote agent: files timed one after another, not "
                             "interleaved"})
    return {"format": FORMAT, "resolution": int(resolution), "statistic": statistic, "rounds": 0,
            "round_iters": 0, "backend": "remote", "device": next(iter(full.values()))["device"],
            "forms": forms, "ratios": ratios}
