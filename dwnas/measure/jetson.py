"""NVIDIA Jetson power rails (INA3221 monitors) from sysfs, in both driver layouts.

JetPack 4 (L4T 32), iio driver ``ina3221x``::

    <root>/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/rail_name_K
                                                                 /in_powerK_input   (mW)

JetPack 5 and later, hwmon driver ``ina3221``::

    <root>/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/inK_label
                                                                  /inK_input   (bus mV)
                                                                  /currK_input (mA)

with P = V x I. Rail names are read at run time; channel order differs between boards and
releases. In the hwmon layout ``in7`` ("sum of shunt voltages") and ``curr4`` are the chip's
summation channel: a sum of shunt voltages / currents, not a power, so they are not rails here.
Channels labelled ``NC`` (not connected) or disabled (``inK_enable`` = 0) are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.measure.meters import SampledPowerMeter, SensorError

IIO_DRIVER = "sys/bus/i2c/drivers/ina3221x"
HWMON_DRIVER = "sys/bus/i2c/drivers/ina3221"


@dataclass(frozen=True)
class Rail:
    """One monitored power rail and the files its power is computed from."""

    name: str
    layout: str  # "iio" or "hwmon"
    chip: str  # "<bus>-<addr>", e.g. "1-0040"
    channel: int
    power_file: Path | None = None  # iio: mW
    voltage_file: Path | None = None  # hwmon: mV
    current_file: Path | None = None  # hwmon: mA

    def read_mw(self) -> float:
        if self.power_file is not None:
            return float(int(self.power_file.read_text().strip()))
        assert self.voltage_file is not None and self.current_file is not None
        millivolts = int(self.voltage_file.read_text().strip())
        milliamps = int(self.current_file.read_text().strip())
        return millivolts * milliamps / 1000.0


def _channel(path: Path, pattern: str) -> int | None:
    match = re.fullmatch(pattern, path.name)
    return int(match.group(1)) if match else None


def _iio_rails(root: Path) -> list[Rail]:
    rails = []
    for name_file in sorted(root.glob(f"{IIO_DRIVER}/*/iio:device*/rail_name_*")):
        k = _channel(name_file, r"rail_name_(\d+)")
        power = name_file.parent / f"in_power{k}_input"
        if k is None or not power.is_file():
            continue
        name = name_file.read_text().strip()
        chip = name_file.parent.parent.name
        rails.append(Rail(name, "iio", chip, k, power_file=power))
    return rails


def _hwmon_rails(root: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(root.glob(f"{HWMON_DRIVER}/*/hwmon/hwmon*/in*_label")):
        k = _channel(label_file, r"in(\d+)_label")
        if k is None:
            continue
        folder = label_file.parent
        voltage, current = folder / f"in{k}_input", folder / f"curr{k}_input"
        if not (voltage.is_file() and current.is_file()):
            continue  # e.g. in7, the summation channel: no matching current, no power
        name = label_file.read_text().strip()
        if name.upper() == "NC" or name.lower().startswith("sum of"):
            continue
        enable = folder / f"in{k}_enable"
        if enable.is_file() and enable.read_text().strip() == "0":
            continue
        chip = folder.parent.parent.name
        rails.append(Rail(name, "hwmon", chip, k, voltage_file=voltage, current_file=current))
    return rails


def discover_rails(root: str | Path = "/") -> list[Rail]:
    """All INA3221 rails under ``root``; SensorError naming both searched paths when none.

    A name that occurs on two chips gets ``@<chip>`` appended to keep both.
    """
    root = Path(root)
    rails = _iio_rails(root) + _hwmon_rails(root)
    if not rails:
        raise SensorError(
            f"no INA3221 power rails under {root / IIO_DRIVER} (JetPack 4) or "
            f"{root / HWMON_DRIVER} (JetPack 5+)"
        )
    counts: dict[str, int] = {}
    for rail in rails:
        counts[rail.name] = counts.get(rail.name, 0) + 1
    return [
        Rail(
            f"{r.name}@{r.chip}",
            r.layout,
            r.chip,
            r.channel,
            r.power_file,
            r.voltage_file,
            r.current_file,
        )
        if counts[r.name] > 1
        else r
        for r in rails
    ]


def require_jetson(root: str | Path = "/") -> None:
    """Refuse ``--device jetson`` where ``root`` shows no Jetson, rather than record a host run
    as ``backend: jetson``. Any one sign suffices: the L4T release file, a Jetson/NVIDIA model
    in the device tree, or an INA3221 driver directory (a fixture tree under ``--sysfs-root``).
    """
    from dwnas.measure.sysinfo import jetson_model

    root = Path(root)
    release = root / "etc/nv_tegra_release"
    if release.is_file():
        return
    model = jetson_model(root)
    if model and ("jetson" in model.lower() or "nvidia" in model.lower()):
        return
    if (root / IIO_DRIVER).is_dir() or (root / HWMON_DRIVER).is_dir():
        return
    raise DwnasError(
        f"--device jetson: {root} does not look like a Jetson: no {release}, no Jetson model in "
        f"{root / 'proc/device-tree/model'} and no INA3221 driver under {root / IIO_DRIVER} or "
        f"{root / HWMON_DRIVER}; run on the board, pass --sysfs-root for a copy of its tree, or "
        "use --device host / cuda"
    )


def sensor_update_interval_ms(rails: list[Rail]) -> int | None:
    """The hwmon chip's own conversion interval (``update_interval``, ms), when exposed."""
    for rail in rails:
        if rail.voltage_file is not None:
            path = rail.voltage_file.parent / "update_interval"
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                return None
    return None


class Ina3221Meter(SampledPowerMeter):
    """Samples every rail's power on a thread and integrates it over the timed window."""

    def __init__(
        self, root: str | Path = "/", interval_ms: float = 10.0, total_rail: str | None = None
    ):
        self.rails = discover_rails(root)
        names = [r.name for r in self.rails]
        if total_rail is not None and total_rail not in names:
            raise SensorError(f"total rail {total_rail!r} not among INA3221 rails {names}")
        layouts = sorted({r.layout for r in self.rails})
        super().__init__(self.read_all, interval_ms, f"ina3221-{'+'.join(layouts)}", total_rail)
        try:
            self.read_all()
        except (OSError, ValueError) as exc:
            raise SensorError(f"INA3221 rails present but not readable: {exc}") from exc

    def read_all(self) -> dict[str, float]:
        return {rail.name: rail.read_mw() for rail in self.rails}

    def describe(self) -> dict:
        return {
            "source": self.source,
            "rails": [
                {"name": r.name, "chip": r.chip, "channel": r.channel, "layout": r.layout}
                for r in self.rails
            ],
            "sensor_update_interval_ms": sensor_update_interval_ms(self.rails),
        }
