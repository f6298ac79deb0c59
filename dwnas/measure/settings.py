"""Measurement settings: one typed record shared by the CLI, the Python API and the remote agent.

Kept free of heavy imports: the agent validates a client's settings before it spawns a job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dwnas.errors import DwnasError

DEVICES = ("host", "cuda", "jetson")
# Deployment runtimes and the file format each runs (here, free of torch, so that building the
# CLI's parsers imports no framework).
RUNTIME_FORMATS = {"torch": "pt2", "onnxruntime": "onnx"}


@dataclass
class MeasureSettings:
    """How to time a model and where to read energy from.

    ``batch`` is the latency batch (paper convention: 1). ``throughput_batch`` runs a second timed
    loop at that batch size; ``None`` (or equal to ``batch``) derives throughput from the latency
    loop. ``min_seconds`` keeps a timed loop running past ``iters`` until it lasts that long, so
    that slow power sensors see enough samples. ``threads=None`` keeps torch's current count (and
    records it). ``sysfs_root`` is the directory standing in for ``/`` when sensors and
    ``/proc/device-tree`` are read; external tools (nvpmodel, tegrastats) only run when it is ``/``.
    """

    device: str = "host"
    batch: int = 1
    throughput_batch: int | None = None
    warmup: int = 10
    iters: int = 100
    min_seconds: float = 0.0
    threads: int | None = None
    channels_last: bool = False
    sysfs_root: str = "/"
    sample_interval_ms: float = 10.0
    total_rail: str | None = None
    cuda_index: int = 0
    seed: int = 0
    trt: bool = True
    trt_fp16: bool = False
    trt_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise DwnasError(
                f"measure: device must be one of {', '.join(DEVICES)}, got {self.device!r}"
            )
        for name in ("batch", "iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DwnasError(f"measure: {name} must be an integer >= 1, got {value!r}")
        for name in ("warmup", "cuda_index", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DwnasError(f"measure: {name} must be an integer >= 0, got {value!r}")
        if self.throughput_batch is not None and (
            not isinstance(self.throughput_batch, int) or self.throughput_batch < 1
        ):
            raise DwnasError(
                f"measure: throughput_batch must be an integer >= 1, got {self.throughput_batch!r}"
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise DwnasError(f"measure: threads must be an integer >= 1, got {self.threads!r}")
        if not self.sample_interval_ms > 0:
            raise DwnasError(
                f"measure: sample_interval_ms must be > 0, got {self.sample_interval_ms!r}"
            )
        if not self.min_seconds >= 0:
            raise DwnasError(f"measure: min_seconds must be >= 0, got {self.min_seconds!r}")
        if not self.trt_timeout_s > 0:
            raise DwnasError(f"measure: trt_timeout_s must be > 0, got {self.trt_timeout_s!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureSettings:
        """Build settings from JSON data, refusing unknown keys (a typo must not pass silently)."""
        if not isinstance(data, dict):
            raise DwnasError(f"measure: settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DwnasError(f"measure: unknown settings key(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise DwnasError(f"measure: bad settings: {exc}") from exc

    def replace(self, **changes: Any) -> MeasureSettings:
        return dataclasses.replace(self, **changes)
