"""The profile stage as a library function: :func:`run` times a space's blocks on one device.

Data flow: the space (params ``space``) and a grid of network resolutions give the per-block
latency table (:func:`dwnas.search.latency.profile_space`, timed by the measure stage's timers,
:mod:`dwnas.measure.api`); random architectures timed end to end fit its per-form scale
(calibration) and check it (fidelity). The canary network, deployed and timed beside the table,
lets later measurements correct for the device's drift. ``search.budgets``, when given, are
checked here, before any training, so an infeasible one stops the pipeline early.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def run(*, space: dict, grid: Sequence[int], num_classes: int, out: str | Path,
        device: str = "host", runtime: str = "onnxruntime", settings: dict | None = None,
        statistic: str = "median", calibration_archs: int = 20, fidelity_archs: int = 30,
        rounds: int = 20, round_iters: int = 10, round_statistic: str = "min", seed: int = 0,
        budgets: dict | None = None, modes: Sequence[str] = ("double-win", "deep-only")) -> dict:
    """Profile ``space`` (the params section ``space``) on ``device`` for ``runtime`` at the
    resolutions of ``grid`` (which must cover the space's range) with the measurement
    ``settings``; whole networks are timed in ``rounds`` of ``round_iters`` runs, as the measure
    stage times them. Write ``out`` atomically (``lut.json``, the canary's deploy file,
    ``lut_fidelity.{json,png}`` when ``fidelity_archs``, ``summary.json``) and return the summary."""
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.measure.api import latency_timer
    from dwnas.measure.backends import make_backend
    from dwnas.measure.settings import MeasureSettings
    from dwnas.report.figures import plot_fidelity
    from dwnas.search.latency import calibrate, canary_network, fidelity, profile_space
    from dwnas.space import Space
    from dwnas.transform.export import runtime_file

    settings = {} if settings is None else settings
    space = Space.from_params(space)
    grid = sorted(set(grid))
    lo, hi = min(space.resolutions()), max(space.resolutions())
    if grid[0] > lo or grid[-1] < hi:
        raise DwnasError(f"--grid {grid} must cover the space's resolutions [{lo}, {hi}]")
    measure = latency_timer(device, settings, statistic, runtime)
    table = profile_space(space, device, measure, grid, num_classes, runtime=runtime)
    table.settings.update(settings, statistic=statistic)
    # whole networks are timed as the measure stage times them (rounds, round statistic)
    network_timer = latency_timer(device, settings, round_statistic, runtime, (rounds, round_iters))
    table.settings.update(network_estimator={"rounds": rounds, "round_iters": round_iters,
                                             "statistic": round_statistic})
    if calibration_archs:
        calibrate(table, space, network_timer, num_classes, calibration_archs, seed)
    table.device_description = make_backend(MeasureSettings(device=device)).describe()
    if budgets is not None:  # the table the search will use: its budgets are checked now
        from dwnas.search.budgets import check_feasible

        check_feasible(table, space, budgets, list(modes))
    with atomic_dir(out) as tmp:
        canary_arch, canary = canary_network(space, num_classes, seed)
        side = canary_arch.resolution
        canary_file = runtime_file(canary, runtime, (3, side, side), tmp)
        canary_file = canary_file.rename(tmp / f"canary{canary_file.suffix}")
        table.settings["canary"] = {"file": canary_file.name, "resolution": side,
                                    "latency_ms": network_timer(canary_file, (3, side, side)),
                                    "arch": canary_arch.to_dict()}
        table.save(tmp / "lut.json")
        summary = {"device": device, "runtime": runtime,
                   "entries": sum(len(v) for v in table.entries.values()),
                   "grid": grid, "call_overhead_ms": table.settings["call_overhead_ms"],
                   "calibration": table.settings.get("calibration"),
                   "canary": table.settings["canary"]}
        if fidelity_archs:
            result = fidelity(table, space, network_timer, num_classes, fidelity_archs, seed)
            write_json(tmp / "lut_fidelity.json", result)
            plot_fidelity(result, tmp / "lut_fidelity.png")
            summary["fidelity"] = result["summary"]
        write_json(tmp / "summary.json", summary)
    return summary
