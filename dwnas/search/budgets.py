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


def check_feasible(table, space, budgets: dict, modes) -> dict[str, float]:
    """Every budget against the fastest network each search mode can pick, predicted by the
    latency ``table``: a budget below it is an error now, from the profile stage, rather than from
    the search after hours of training. Returns label -> budget in ms."""
    from dwnas.search.evolution import deep_only, fastest_candidates

    reference = table.predict(deep_only(space.largest()), "deep")
    if not reference > 0:
        raise DwnasError(f"latency table on {table.device}: the largest network is predicted at "
                         f"{reference:.4g} ms; its timings are noise (profile with more "
                         f"iterations: profile.iters, profile.warmup)")
    resolved = resolve_budgets(budgets, reference)
    for mode in modes:
        form = "shallow" if mode == "double-win" else "deep"
        floor = min(table.predict(arch, form) for arch in fastest_candidates(space, mode))
        for label, ms in resolved.items():
            if floor > ms:
                raise DwnasError(
                    f"search.budgets: {label} ({ms:.4g} ms on {table.device}) is infeasible in "
                    f"{mode} mode: the fastest network of the space is predicted at "
                    f"{floor:.4g} ms by this latency table; raise the budget or shrink the space")
    return resolved
