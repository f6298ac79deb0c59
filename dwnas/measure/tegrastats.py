"""``tegrastats`` as a fallback power source when the INA3221 sysfs files are not readable.

tegrastats prints one line per interval; its power fields are ``<RAIL> <current>/<average>``,
bare numbers in mW on JetPack 4 (``POM_5V_IN 3023/3023``) and with units on JetPack 5+
(``VDD_IN 5123mW/5123mW``). Only the current value is used: it is the instantaneous reading at
print time, and the meter integrates those readings like sysfs samples. Its interval is coarse
(this module uses at least 100 ms), so windows should last seconds (``min_seconds``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence

from dwnas.measure.meters import EnergyMeter, SensorError
from dwnas.measure.stats import PowerSample, summarise_power

MIN_INTERVAL_MS = 100

_POWER_FIELD = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def parse_tegrastats_line(line: str) -> dict[str, dict[str, float]]:
    """Power fields of one tegrastats line: ``{rail: {"current_mw": .., "average_mw": ..}}``.

    Memory fields (``RAM 2102/3964MB``) carry a unit suffix glued to the number and are not
    matched; lines without power fields give an empty dict.
    """
    return {
        name: {"current_mw": float(current), "average_mw": float(average)}
        for name, current, average in _POWER_FIELD.findall(line)
    }


def find_tegrastats() -> str | None:
    return shutil.which("tegrastats")


class TegrastatsMeter(EnergyMeter):
    """Runs ``tegrastats --interval N`` for one window and integrates the rails it prints.

    The value in force at the window's start is the first line read before it begins; the last
    line's value is held until the window's end (sample-and-hold at both edges).
    """

    source = "tegrastats"

    def __init__(
        self,
        interval_ms: float = 1000.0,
        total_rail: str | None = None,
        command: Sequence[str] | None = None,
        first_line_timeout_s: float = 10.0,
    ):
        self.interval_ms = max(float(interval_ms), MIN_INTERVAL_MS)
        if command is None:
            exe = find_tegrastats()
            if exe is None:
                raise SensorError("tegrastats not found on PATH")
            command = [exe, "--interval", str(int(self.interval_ms))]
        self.command = list(command)
        self.total_rail = total_rail
        self.first_line_timeout_s = first_line_timeout_s
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._first = threading.Event()

    def _reader(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter_ns()
            powers = {k: v["current_mw"] for k, v in parse_tegrastats_line(line).items()}
            if powers:
                with self._lock:
                    self._samples.append((now, powers))
                self._first.set()

    def start(self) -> None:
        self._samples = []
        self._first.clear()
        try:
            self._proc = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError as exc:
            raise SensorError(f"tegrastats could not start: {exc}") from exc
        self._thread = threading.Thread(target=self._reader, args=(self._proc,), daemon=True)
        self._thread.start()
        if not self._first.wait(self.first_line_timeout_s):
            self.close()
            raise SensorError(
                f"tegrastats printed no power fields within {self.first_line_timeout_s:.0f} s"
            )
        with self._lock:
            first = self._samples[-1][1]
            self._window_start = (time.perf_counter_ns(), first)

    def stop(self, images: int) -> dict:
        end_ns = time.perf_counter_ns()
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            raise SensorError("tegrastats exited during the timed loop")
        with self._lock:
            start_ns, first = self._window_start
            inside = [s for s in self._samples if start_ns < s[0] < end_ns]
            last = self._samples[-1][1]
        self.close()
        samples = [(start_ns, first), *inside, (end_ns, last)]
        try:
            summary = summarise_power(samples, images, self.total_rail)
        except KeyError as exc:
            raise SensorError(f"total rail {exc.args[0]!r} not printed by tegrastats") from exc
        summary["interval_ms"] = self.interval_ms
        return summary

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def describe(self) -> dict:
        return {"source": self.source, "command": self.command, "interval_ms": self.interval_ms}
