"""HURRICANE's operator latency table: every candidate operator timed on the device at every
layer position, the per-position pre-selection of the fastest, and a path's predicted latency
from the table."""

from __future__ import annotations

from torch import nn

from dwnas.baselines.hurricane.ops import SKIP, Layer, Op, OpBlock, fixed_parts, layers_of
from dwnas.errors import DwnasError


def profile_ops(space, ops: list[Op], resolution: int, measure, num_classes: int) -> dict:
    """``{"positions": {pos: {op: {"ms", "macs"}}}, "stem_ms", "head_ms", "call_overhead_ms"}``:
    every operator timed (BN folded) at every layer position, ``measure(module, shape) -> ms``."""
    from dwnas.nn.counters import count
    from dwnas.nn.static import init_weights
    from dwnas.progress import progress
    from dwnas.search.latency import spatial_sizes
    from dwnas.transform.deploy import fold_bn

    sizes = spatial_sizes(space, resolution)
    positions = {layer.position: layer for layer in layers_of(space)}
    jobs = []
    for pos, layer in positions.items():
        side = sizes[layer.stage][0] if layer.first else sizes[layer.stage][1]
        for op in ops:
            jobs.append((pos, op, layer, side))
    stem, head = fixed_parts(space, num_classes)
    init_weights(stem)
    init_weights(head)
    last_side = sizes[-1][1]
    table = {
        "resolution": int(resolution),
        "call_overhead_ms": float(measure(nn.Identity(), (1, 1, 1))),
        "stem_ms": float(measure(fold_bn(stem), (3, resolution, resolution))),
        "head_ms": float(measure(fold_bn(head), (space.stage_out(len(space.stages) - 1),
                                                 last_side, last_side))),
        "positions": {pos: {} for pos in positions},
    }
    for pos, op, layer, side in progress(jobs, desc="hurricane profile"):
        block = OpBlock(layer.in_channels, layer.out_channels, layer.stride, op)
        init_weights(block)
        deployed = fold_bn(block)
        table["positions"][pos][op.name] = {
            "ms": float(measure(deployed, (layer.in_channels, side, side))),
            "macs": count(deployed, side, layer.in_channels).macs,
        }
    return table


def preselect(entries: dict[str, dict], keep: int) -> list[str]:
    """The ``keep`` operators with the lowest measured latency at this position, fastest first
    (the fastest is always kept, so every budget the full set could meet stays reachable)."""
    if keep < 1:
        raise DwnasError(f"hurricane.keep_ops: must be >= 1 (got {keep})")
    return sorted(entries, key=lambda n: (entries[n]["ms"], n))[:keep]


def layer_choices(space, table: dict, keep: int) -> list[list[str]]:
    """Per layer, its pre-selected operators (fastest first), plus ``skip`` where the
    layer keeps the shape (every layer but a stage's first)."""
    kept = {pos: preselect(entries, keep) for pos, entries in table["positions"].items()}
    return [kept[layer.position] + ([] if layer.first else [SKIP]) for layer in layers_of(space)]


def fastest_op(table: dict, layer: Layer, allowed: list[str]) -> str:
    """The fastest of a layer's allowed operators (``skip`` costs nothing): where a layer not
    searched yet sits, so that the first stage's budget check is no stricter than the whole space's
    at the fixed layers."""
    entries = table["positions"][layer.position]
    return min(allowed, key=lambda n: (0.0 if n == SKIP else entries[n]["ms"], n))


def path_latency(space, table: dict, path) -> float:
    """Predicted latency (ms) of a path: its timed parts, the call overhead paid once."""
    parts = [table["stem_ms"], table["head_ms"]]
    for layer, choice in zip(layers_of(space), path, strict=True):
        if choice != SKIP:
            parts.append(table["positions"][layer.position][choice]["ms"])
    return sum(parts) - table["call_overhead_ms"] * (len(parts) - 1)
