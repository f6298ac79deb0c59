"""Latency budgets: absolute milliseconds, or fractions of the largest deep subnet's latency.

Fractions keep a params file portable across devices (the same file means "40% of the largest
network's latency" on a laptop and on a Jetson). Kept free of heavy imports: the Snakefile reads
the labels to name its per-budget outputs.
"""

from __future__ import annotations

from dwnas.errors import DwnasError

UNITS = ("fraction", "ms")


def budget_labels(budgets: dict) -> list[str]:
    """File-name-safe labels, e.g. ``40pct`` or ``2.5ms``, in params order."""
    unit, values = budgets["unit"], budgets["values"]
    if unit not in UNITS:
        raise DwnasError(f"search.budgets.unit: must be one of {UNITS}, got {unit!r}")
    if unit == "fraction":
        return [f"{round(v * 100):d}pct" for v in values]
    return [f"{v:g}ms" for v in values]


def resolve_budgets(budgets: dict, reference_ms: float) -> dict[str, float]:
    """Label -> budget in ms (``reference_ms``: the largest deep subnet's predicted latency)."""
    labels = budget_labels(budgets)
    scale = reference_ms if budgets["unit"] == "fraction" else 1.0
    return {label: float(v) * scale for label, v in zip(labels, budgets["values"], strict=True)}
