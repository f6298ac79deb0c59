"""Python entry points: measure an in-process module or a model file with one call.

The search and profiling code calls :func:`measure_module` directly; ``dwnas measure`` and the
remote agent's job call :func:`measure_file`. Both return the measure.json dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError
from dwnas.measure.settings import MeasureSettings


def as_settings(settings: MeasureSettings | Mapping[str, Any] | None) -> MeasureSettings:
    if settings is None:
        return MeasureSettings()
    if isinstance(settings, MeasureSettings):
        settings.validate()
        return settings
    return MeasureSettings.from_dict(dict(settings))


def measure_module(
    module: Any,
    input_shape: Sequence[int],
    settings: MeasureSettings | Mapping[str, Any] | None = None,
) -> dict:
    """Time an ``nn.Module`` (eval mode, moved to the backend's device in place).

    ``input_shape`` is (C, H, W), or (N, C, H, W) with N equal to ``settings.batch``.
    """
    from dwnas.measure.backends import make_backend

    settings = as_settings(settings)
    return make_backend(settings).measure(module, input_shape, settings)


LATENCY_STATISTICS = ("median", "min", "mean", "p90")


def latency_timer(device: str, settings: Mapping[str, Any], statistic: str = "median",
                  runtime: str | None = None, rounds: tuple[int, int] | None = None):
    """``timer(module, input_shape) -> ms``: one latency statistic of :func:`measure_module` on
    ``device`` (the latency table's and HURRICANE's operator timings; no TensorRT). With a
    ``runtime`` (torch, onnxruntime) each module is first exported to that runtime's file format
    and the file is timed, exactly as ``dwnas measure`` times a deploy file (a path to such a file
    is timed as it is). With ``rounds`` = (rounds, round_iters) the value is ``dwnas compare``'s
    estimator (the median over rounds of each round's ``statistic``) instead of one loop's
    ``statistic``."""
    if statistic not in LATENCY_STATISTICS:
        raise DwnasError(f"latency statistic must be one of {LATENCY_STATISTICS} (got {statistic!r})")
    base = {"device": device, "trt": False, **settings}

    def timer(module: Any, input_shape: Sequence[int]) -> float:
        if runtime is None:
            return measure_module(module, input_shape, base)["latency_ms"][statistic]
        import tempfile

        from dwnas.measure.backends import make_backend
        from dwnas.transform.export import runtime_file

        measure_settings = as_settings(base)
        with tempfile.TemporaryDirectory(prefix="dwnas-timer-") as folder:
            path = (Path(module) if isinstance(module, (str, Path))  # a deploy file: time it
                    else runtime_file(module, runtime, input_shape, folder))
            if rounds is not None:
                from dwnas.measure.compare import rounds_latency

                return rounds_latency(path, input_shape, measure_settings, *rounds, statistic)
            result = make_backend(measure_settings).measure(path, input_shape, measure_settings)
        return result["latency_ms"][statistic]

    return timer


def measure_file(
    path: str | Path,
    resolution: int,
    settings: MeasureSettings | Mapping[str, Any] | None = None,
    channels: int = 3,
) -> dict:
    """Time a model file (``.pt2``, ``.onnx``, ``.pt``) on square ``resolution`` inputs."""
    from dwnas.measure.backends import make_backend
    from dwnas.measure.models import model_format

    settings = as_settings(settings)
    path = Path(path)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise DwnasError(f"measure: resolution must be a positive integer, got {resolution!r}")
    model_format(path)
    if not path.is_file():
        raise DwnasError(f"{path}: model file not found")
    return make_backend(settings).measure(path, (channels, resolution, resolution), settings)
