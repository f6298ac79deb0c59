"""Pure arithmetic of a measurement: latency statistics, energy from power samples, and the
energy entry every meter returns.

Separate from the sensors so that it can be checked exactly on synthetic numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# A power sample: (monotonic time in ns, {rail name: power in mW}).
PowerSample = tuple[int, Mapping[str, float]]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    pos = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    frac = pos - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


def latency_stats(durations_ns: Sequence[int]) -> dict[str, float | int]:
    """Latency statistics in ms of per-iteration durations; std is the sample std (ddof=1)."""
    if not durations_ns:
        raise ValueError("no timed iterations")
    ms = sorted(d / 1e6 for d in durations_ns)
    n = len(ms)
    mean = sum(ms) / n
    var = sum((x - mean) ** 2 for x in ms) / (n - 1) if n > 1 else 0.0
    return {
        "median": percentile(ms, 50),
        "mean": mean,
        "p90": percentile(ms, 90),
        "std": math.sqrt(var),
        "min": ms[0],
        "max": ms[-1],
        "iterations": n,
    }


def integrate_power(samples: Sequence[PowerSample]) -> dict[str, float]:
    """Energy per rail in mJ by the trapezoid rule over (ns, mW) samples.

    mW x s = mJ. A rail missing from some sample is integrated over the samples that have it.
    """
    if len(samples) < 2:
        raise ValueError("at least two power samples are needed to integrate")
    rails = sorted({name for _, powers in samples for name in powers})
    energy = {}
    for rail in rails:
        points = [(t, p[rail]) for t, p in samples if rail in p]
        total = 0.0
        for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
            total += (p0 + p1) / 2.0 * (t1 - t0) / 1e9
        energy[rail] = total
    return energy


def total_rail_name(rails: Sequence[str], configured: str | None) -> str | None:
    """The rail that carries the whole board's power, or None when the rails must be summed.

    A configured name wins (and must exist). Otherwise the module-input rails that NVIDIA names
    ``VDD_IN`` (JetPack 5+, Orin; TX2) or ``POM_5V_IN`` (JetPack 4, Nano) are used.
    """
    if configured:
        if configured not in rails:
            raise KeyError(configured)
        return configured
    for candidate in ("VDD_IN", "POM_5V_IN"):
        if candidate in rails:
            return candidate
    return None


def summarise_power(
    samples: Sequence[PowerSample],
    images: int,
    configured_total: str | None = None,
) -> dict:
    """Energy and mean power of a sampled window: per rail, total, and per image.

    Total is the board-input rail when one exists (see :func:`total_rail_name`), else the sum
    of all rails, which under-counts whatever no sensor monitors; ``total_rail`` says which.
    """
    energy = integrate_power(samples)
    duration_s = (samples[-1][0] - samples[0][0]) / 1e9
    total = total_rail_name(list(energy), configured_total)
    total_mj = energy[total] if total else sum(energy.values())
    rails_mean = {r: (e / duration_s if duration_s > 0 else None) for r, e in energy.items()}
    return energy_result(
        total_mj,
        images,
        duration_s,
        samples=len(samples),
        total_rail=total or "sum_of_rails",
        rails_mean_mw=rails_mean,
        rails_energy_mj=energy,
    )


def energy_result(
    energy_mj: float,
    images: int,
    duration_s: float,
    samples: int,
    total_rail: str | None = None,
    rails_mean_mw: Mapping[str, float | None] | None = None,
    rails_energy_mj: Mapping[str, float] | None = None,
) -> dict:
    """The energy entry of one measured window, built in one place so that every meter writes
    the same keys in the same order into measure.json.

    ``rails_energy_mj`` is a key only of meters that integrate rails, so it is left out when None.
    """
    result = {
        "energy_mj": energy_mj,
        "per_image_mj": energy_mj / images,
        "duration_s": duration_s,
        "mean_power_mw": energy_mj / duration_s if duration_s > 0 else None,
        "rails_mean_mw": rails_mean_mw,
    }
    if rails_energy_mj is not None:
        result["rails_energy_mj"] = rails_energy_mj
    result["total_rail"] = total_rail
    result["samples"] = samples
    return result


def unmeasured_energy(reason: str | None) -> dict:
    """The energy entry of a window no sensor measured: null energy and why."""
    return {"energy_mj": None, "per_image_mj": None, "reason": reason}
