"""CPU package energy from Intel RAPL through the Linux powercap sysfs interface.

Only top-level package domains (``intel-rapl:N`` whose ``name`` is ``package-N``) are summed:
sub-domains (``intel-rapl:N:M``: core, uncore, dram) are parts of a package, and ``psys`` covers
the whole platform, so adding either would double count. The counter wraps at
``max_energy_range_uj``; one wrap per window is corrected (a window long enough for two wraps,
minutes at full load, cannot be told apart and is the user's to avoid). RAPL counts the whole
package, other processes included.
"""

from __future__ import annotations

import re
from pathlib import Path

from dwnas.measure.meters import CounterMeter, SensorError

_PACKAGE_DIR = re.compile(r"^intel-rapl:\d+$")


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise SensorError(
            f"RAPL not readable: permission denied on {path} (root-only since Linux 5.10; "
            "run as root or make energy_uj readable)"
        ) from exc
    except FileNotFoundError as exc:
        raise SensorError(f"RAPL not readable: {path} missing") from exc
    except (OSError, ValueError) as exc:
        raise SensorError(f"RAPL not readable: {path}: {exc}") from exc


def package_domains(root: str | Path = "/") -> list[Path]:
    """Package domain directories under ``<root>/sys/class/powercap``; SensorError if none."""
    base = Path(root) / "sys/class/powercap"
    if not base.is_dir():
        raise SensorError(f"RAPL not readable: {base} missing (VM or non-x86 machine?)")
    domains = []
    for entry in sorted(base.iterdir()):
        if not _PACKAGE_DIR.match(entry.name):
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith("package"):
            domains.append(entry)
    if not domains:
        raise SensorError(f"RAPL not readable: no package domains (intel-rapl:N) under {base}")
    return domains


def energy_delta_uj(start: int, end: int, max_range: int) -> int:
    """Counter difference with at most one wrap-around at ``max_range``."""
    return end - start if end >= start else end + max_range - start


class RaplMeter(CounterMeter):
    """Energy of the CPU packages over a window, from energy_uj counter deltas."""

    total_rail = "sum_of_packages"

    def __init__(self, root: str | Path = "/"):
        self.domains = package_domains(root)
        self.max_range = {d: _read_int(d / "max_energy_range_uj") for d in self.domains}
        self._read_uj()  # fail now (permission) rather than after the timed loop
        super().__init__(self._read_uj, "rapl")

    def _read_uj(self) -> dict[Path, int]:
        return {d: _read_int(d / "energy_uj") for d in self.domains}

    def window_mj(
        self, start: dict[Path, int], end: dict[Path, int]
    ) -> tuple[float, dict[str, float]]:
        """Summed package energy and each package's, wraps corrected in integer uJ."""
        per_domain = {
            d.name: energy_delta_uj(start[d], end[d], self.max_range[d]) / 1000.0
            for d in self.domains
        }
        return sum(per_domain.values()), per_domain

    def describe(self) -> dict:
        return {"source": self.source, "domains": [d.name for d in self.domains]}
