"""The latency table checked against what the pipeline measured, not only against random archs.

For every measured row whose network is an architecture of the table's space (Double-Win,
deep-only, DepthShrinker), the table's prediction of its deep and shallow forms is set against
the latency ``dwnas compare`` measured for those files (one entry per distinct graph). Networks
outside the space (MobileNetV2, HURRICANE, ODN) cannot be predicted by it and are listed as such.

A table profiled minutes before the measurement meets a machine that may run a few percent faster
or slower by then (a shared VM's speed drifts). ``dwnas compare`` times the table's canary network
inside its rounds; its ``drift`` (latency now / at profiling) scales the prediction into a second,
drift-corrected one. Both are reported: the raw error is the table's and the machine's together,
the corrected one the table's own.
"""

from __future__ import annotations

from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.io import read_json
from dwnas.report.tables import row_folder


def _arch_of(folder: Path, transform: dict):
    from dwnas.space import Arch

    if "arch" in transform:
        return Arch.from_dict(transform["arch"])
    if (folder / "arch.json").is_file():
        return Arch.load(folder / "arch.json")
    return None


def pipeline_fidelity(measure_paths, tables: dict, space) -> dict:
    """``{"rows": [...], "summary": {runtime: {mape, within_10pct, n}}, "outside": {...}}``;
    ``tables`` maps (device, runtime) to a LatencyTable of ``space``. ``outside`` maps
    "method budget device runtime" to why the table cannot predict it: a mapping, not a list of
    records, because DVC's plots merge every list of records in a file into the plotted points."""
    rows, outside, seen = [], {}, set()
    for path in sorted(Path(p) for p in measure_paths):
        folder, method, budget, device, runtime = row_folder(path)
        table = tables.get((device, runtime))
        if table is None:
            continue
        transform = read_json(folder / "transform.json")
        arch = _arch_of(folder, transform)
        try:
            if arch is None or transform.get("space_fingerprint") != table.space_fingerprint:
                raise DwnasError("not a network of the latency table's space")
            space.validate(arch)
            predicted = {form: table.predict(arch, form) for form in ("deep", "shallow")}
        except DwnasError as exc:
            outside[f"{method} {budget} {device} {runtime}"] = str(exc).splitlines()[0]
            continue
        compare = read_json(path)
        drift = (compare.get("canary") or {}).get("drift")
        for form in ("deep", "shallow"):
            entry = compare["forms"][form]
            key = (runtime, device, entry["graph_digest"])
            if key in seen:
                continue
            seen.add(key)
            measured = entry["latency_ms"]
            corrected = predicted[form] * drift if drift else None
            rows.append({"method": method, "budget": budget, "device": device, "runtime": runtime,
                         "form": form, "measured_ms": measured, "predicted_ms": predicted[form],
                         "error": (predicted[form] - measured) / measured, "drift": drift,
                         "predicted_drift_corrected_ms": corrected,
                         "error_drift_corrected": (None if corrected is None
                                                   else (corrected - measured) / measured)})
    summary = {}
    for runtime in sorted({r["runtime"] for r in rows}):
        own = [r for r in rows if r["runtime"] == runtime]
        summary[runtime] = {**_accuracy([r["error"] for r in own]),
                            "drift_corrected": (
                                _accuracy([r["error_drift_corrected"] for r in own])
                                if all(r["drift"] for r in own) else None)}
    return {"rows": rows, "summary": summary, "outside": outside}


def _accuracy(errors: list[float]) -> dict:
    errors = [abs(e) for e in errors]
    return {"mape": sum(errors) / len(errors), "n": len(errors),
            "within_10pct": sum(e <= 0.10 for e in errors) / len(errors)}
