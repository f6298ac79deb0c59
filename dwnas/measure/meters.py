"""Energy meters: one interface over counters (RAPL, NVML) and sampled power rails (INA3221).

A meter is started just before a timed loop and stopped just after its final synchronise; what
it returns covers exactly that window. A sensor that fails raises :class:`SensorError` with the
reason, which the backend reports as ``null`` energy plus that reason, never as a guess.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from dwnas.measure.stats import PowerSample, energy_result, summarise_power


class SensorError(Exception):
    """A sensor that cannot be read (absent, no permission, failed mid-run); the message is the reason."""


class EnergyMeter(ABC):
    """Measures the energy of one window; ``source`` names the sensor in measure.json."""

    source: str = "unknown"

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, images: int) -> dict:
        """End the window; return at least energy_mj, per_image_mj, duration_s, mean_power_mw."""

    def describe(self) -> dict:
        return {"source": self.source}

    def close(self) -> None:
        """Release the sensor (NVML handle, subprocess); safe to call more than once."""
        return None


class CounterMeter(EnergyMeter):
    """A meter over a cumulative energy counter, read just before and just after the window.

    By default ``read`` returns one counter in mJ that does not wrap (NVML). A meter over several
    counters, or over counters that wrap (RAPL), passes its own reading and overrides
    :meth:`window_mj`, so that the window's timing and result are built here only.
    """

    total_rail: str | None = None

    def __init__(self, read: Callable[[], Any], source: str):
        self._read = read
        self.source = source
        self._start: tuple[int, Any] | None = None

    def window_mj(self, start: Any, end: Any) -> tuple[float, dict[str, float] | None]:
        """Energy between two readings in mJ, and each part's share when the counter has parts."""
        return end - start, None

    def start(self) -> None:
        self._start = (time.perf_counter_ns(), self._read())

    def stop(self, images: int) -> dict:
        if self._start is None:
            raise RuntimeError("meter stopped before it was started")
        end = self._read()
        end_ns = time.perf_counter_ns()
        start_ns, start = self._start
        energy, parts = self.window_mj(start, end)
        duration_s = (end_ns - start_ns) / 1e9
        parts_mean_mw = None
        if parts is not None and duration_s > 0:
            parts_mean_mw = {name: mj / duration_s for name, mj in parts.items()}
        return energy_result(
            energy,
            images,
            duration_s,
            samples=2,
            total_rail=self.total_rail,
            rails_mean_mw=parts_mean_mw,
        )


class SampledPowerMeter(EnergyMeter):
    """Reads instantaneous power every ``interval_ms`` on a thread and integrates it (trapezoid).

    Samples are also taken synchronously at start and stop so that the integral spans the whole
    window even when it is shorter than one interval. Each sample is stamped at the middle of its
    read, since reading several I2C-backed files takes a measurable time.
    """

    def __init__(
        self,
        read_mw: Callable[[], Mapping[str, float]],
        interval_ms: float,
        source: str,
        total_rail: str | None = None,
    ):
        self._read_mw = read_mw
        self.interval_s = interval_ms / 1000.0
        self.source = source
        self.total_rail = total_rail
        self._samples: list[PowerSample] = []
        self._error: str | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        before = time.perf_counter_ns()
        powers = dict(self._read_mw())
        after = time.perf_counter_ns()
        self._samples.append(((before + after) // 2, powers))

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self._sample()
            except (OSError, ValueError, SensorError) as exc:
                self._error = f"power read failed during the timed loop: {exc}"
                return

    def start(self) -> None:
        self._samples = []
        self._error = None
        self._stop_event.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="dwnas-power-sampler", daemon=True)
        self._thread.start()

    def stop(self, images: int) -> dict:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        if self._error:
            raise SensorError(self._error)
        try:
            self._sample()
        except (OSError, ValueError) as exc:
            raise SensorError(f"power read failed at the end of the timed loop: {exc}") from exc
        try:
            summary = summarise_power(self._samples, images, self.total_rail)
        except KeyError as exc:
            raise SensorError(
                f"total rail {exc.args[0]!r} not among rails {sorted(self._samples[0][1])}"
            ) from exc
        gaps = [b[0] - a[0] for a, b in zip(self._samples, self._samples[1:], strict=False)]
        summary["mean_sample_interval_ms"] = sum(gaps) / len(gaps) / 1e6
        summary["interval_ms"] = self.interval_s * 1000.0
        return summary
