"""The measure stages as library functions: :func:`measure` (one model file) and :func:`compare`
(the deploy files of one row, timed side by side).

Data flow: each writes its JSON (``dwnas measure``'s measure.json, or the compare JSON of
:mod:`dwnas.measure.compare`), logs the stage's figures and prints one line on stderr. The
timings run here (:func:`dwnas.measure.api.measure_file`,
:func:`dwnas.measure.compare.compare_files`) or on a ``dwnas agent`` at ``remote``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from dwnas.measure.settings import MeasureSettings

DEFAULT_REMOTE_TIMEOUT_S = 1200.0


def check_resolution(value: int) -> None:
    """Before any model is loaded: a resolution a network can run at (100000 px ran out of memory)."""
    from dwnas.config import RESOLUTION_MAX
    from dwnas.errors import DwnasError

    if not 1 <= value <= RESOLUTION_MAX:
        raise DwnasError(f"--resolution must be between 1 and {RESOLUTION_MAX} px, got {value}")


def remote_measurer(remote: str, token_file: str | Path | None, settings: MeasureSettings,
                    timeout: float = DEFAULT_REMOTE_TIMEOUT_S):
    """``measure(path, resolution) -> measure.json`` on the agent at ``remote`` (``host:port``;
    ``token_file`` needed)."""
    from dwnas.errors import DwnasError
    from dwnas.measure.agent import read_token
    from dwnas.measure.remote import measure_remote, parse_address

    if not token_file:
        raise DwnasError("--remote needs --token-file")
    host, port = parse_address(remote)
    token = read_token(token_file)
    return lambda path, resolution: measure_remote(host, port, token, path, settings, timeout,
                                                   resolution=resolution)


def summary_metrics(result: dict) -> dict:
    """The figures worth a metric: latency, throughput, energy (absent ones simply left out)."""
    summary = {"latency_ms": result["latency_ms"]}
    if result.get("throughput"):
        summary["throughput_images_per_s"] = result["throughput"]["images_per_s"]
    if result.get("energy_per_image_mj") is not None:
        summary["energy_per_image_mj"] = result["energy_per_image_mj"]
    if result.get("power_mw"):
        summary["power_mw"] = result["power_mw"]
    if result.get("tensorrt"):
        summary["tensorrt_gpu_compute_ms"] = result["tensorrt"]["gpu_compute_ms"]
    return summary


def measure(*, model: str | Path, resolution: int, out: str | Path, settings: MeasureSettings,
            remote: str | None = None, token_file: str | Path | None = None,
            remote_timeout: float = DEFAULT_REMOTE_TIMEOUT_S) -> dict:
    """Latency, throughput and energy of ``model`` (.pt2, .onnx or .pt) at ``resolution`` px,
    here or on the agent at ``remote``; write ``out`` (measure.json), log it, return it."""
    from dwnas.io import write_json
    from dwnas.track import log_stage

    check_resolution(resolution)
    if remote:
        result = remote_measurer(remote, token_file, settings, remote_timeout)(model, resolution)
    else:
        from dwnas.measure.api import measure_file

        result = measure_file(model, resolution, settings)
    write_json(out, result)
    lat = result["latency_ms"]
    energy = result["energy_per_image_mj"]
    energy_text = (
        f"{energy:.3f} mJ/image"
        if energy is not None
        else f"energy null ({result['energy_reason']})"
    )
    print(
        f"{model}: median {lat['median']:.3f} ms (batch {lat['batch']}), {energy_text} "
        f"-> {out}",
        file=sys.stderr,
    )
    params = {
        **settings.to_dict(),
        "model": str(model),
        "resolution": resolution,
        "remote": remote,
    }
    log_stage("measure", params, summary_metrics(result), [out])
    return result


def compare(*, models: Mapping[str, str | Path], resolution: int, out: str | Path,
            settings: MeasureSettings, resolutions: Mapping[str, int] | None = None,
            rounds: int = 20, round_iters: int = 10, statistic: str = "min",
            canary: str | Path | None = None, remote: str | None = None,
            token_file: str | Path | None = None,
            remote_timeout: float = DEFAULT_REMOTE_TIMEOUT_S) -> dict:
    """Time ``models`` (label deep, shallow or deep-only -> file; ``resolutions``: a network's own
    input size, default ``resolution``) in interleaved rounds, here or on the agent at ``remote``;
    ``canary`` (a lut.json) adds the drift reference. Write ``out``, log it, return it."""
    from dwnas.errors import DwnasError
    from dwnas.io import write_json
    from dwnas.measure.compare import compare_files
    from dwnas.track import log_stage

    resolutions = dict(resolutions or {})
    for size in resolutions.values():
        check_resolution(size)
    check_resolution(resolution)
    if remote and canary:
        raise DwnasError("--canary: the drift reference is timed in this process's rounds; an "
                         "agent's timings (--remote) have none")
    if remote:
        from dwnas.measure.compare import compare_remote

        result = compare_remote(models, resolution,
                                remote_measurer(remote, token_file, settings, remote_timeout),
                                statistic, resolutions)
    else:
        reference = None
        if canary:
            from dwnas.measure.compare import read_canary

            reference = read_canary(canary)
        result = compare_files(models, resolution, settings, rounds, round_iters, statistic,
                               resolutions, reference)
    write_json(out, result)
    metrics = {f"latency_ms.{label}": form["latency_ms"] for label, form in result["forms"].items()}
    for name, ratio in result["ratios"].items():
        metrics[name] = ratio["ratio"]
        if ratio["ci95"]:
            metrics.update({f"{name}.ci_low": ratio["ci95"][0], f"{name}.ci_high": ratio["ci95"][1]})
    log_stage("measure", {"models": models, "resolution": resolution,
                          "rounds": rounds, "round_iters": round_iters,
                          "statistic": statistic, "device": settings.device}, metrics, [out])
    text = ", ".join(f"{name} {r['ratio']:.3f}" + (f" [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
                                                   if r["ci95"] else "")
                     for name, r in result["ratios"].items())
    print(f"{out}: " + ", ".join(f"{label} {form['latency_ms']:.3f} ms"
                                 for label, form in result["forms"].items())
          + (f"; {text}" if text else ""), file=sys.stderr)
    return result
