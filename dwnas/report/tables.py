"""The paper's main table, built from the pipeline's own files (no tracking store needed).

One row per ``measure/<method>/<budget>/<device>/<runtime>.json`` (a ``dwnas compare`` document):
accuracy and counts come from the row's ``transform.json`` (the exported files' own evaluation),
latency, throughput, energy and the speed-ups with their 95% intervals from the compare document,
whose deep, shallow and deep-only networks were timed side by side in one process.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dwnas.errors import DwnasError
from dwnas.io import read_json, write_text
from dwnas.measure.settings import RUNTIME_FORMATS

NOT_MEASURED = "not measured"


def wilson_interval(correct_fraction: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (top-1 over ``n`` images)."""
    if not n:
        return (math.nan, math.nan)
    p = correct_fraction
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def row_folder(measure_path: Path) -> tuple[Path, str, str, str, str]:
    """(folder holding transform.json, method, budget, device, runtime) of a compare document at
    ``<results>/measure/<method>/<budget>/<device>/<runtime>.json``."""
    path = Path(measure_path)
    parts = path.parts
    if len(parts) < 5 or parts[-5] != "measure":
        raise DwnasError(f"{path}: not a measure/<method>/<budget>/<device>/<runtime>.json path")
    results = Path(*parts[:-5])
    method, budget, device, runtime = parts[-4], parts[-3], parts[-2], path.stem
    kind = "transform" if (results / "transform" / method / budget).is_dir() else "baselines"
    return results / kind / method / budget, method, budget, device, runtime


def _ratio(row: dict, compare: dict, name: str) -> None:
    ratio = compare["ratios"].get(name)
    row[name] = ratio["ratio"] if ratio else None
    ci = ratio.get("ci95") if ratio else None
    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (ci if ci else (None, None))


def _energy(form: dict | None) -> tuple[float | None, str | None]:
    if form is None:
        return None, None
    measure = form["measure"]
    energy = measure.get("energy_per_image_mj")
    return energy, (None if energy is not None else measure.get("energy_reason") or "no sensor")


def main_table(measure_paths) -> pd.DataFrame:
    """One row per compare document; ``table.attrs["latency_statistic"]`` names how latency was
    read (a round's statistic, median over the interleaved rounds)."""
    rows, statistics = [], set()
    for path in sorted(Path(p) for p in measure_paths):
        folder, method, budget, device, runtime = row_folder(path)
        compare, transform = read_json(path), read_json(folder / "transform.json")
        summary = read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
        statistics.add(compare["statistic"])
        top1 = transform.get("top1") or {}
        n = transform.get("val_images") or 0
        low, high = wilson_interval(top1.get("evaluated", math.nan), n)
        suffix = RUNTIME_FORMATS.get(runtime, runtime)
        forms = compare["forms"]
        row = {
            "method": method, "budget": budget, "device": device, "runtime": runtime,
            "top1": top1.get("evaluated"), "top1_ci_low": low, "top1_ci_high": high,
            "val_images": n,
            "top1_deep_file": top1.get(f"deep.{suffix}"),
            "top1_shallow_file": top1.get(f"shallow.{suffix}"),
            "macs_deep": transform["macs_deep"], "macs_shallow": transform["macs_shallow"],
            "params_deep": transform["params_deep"], "params_shallow": transform["params_shallow"],
            "layers_deep": transform["layers_deep"], "layers_shallow": transform["layers_shallow"],
            "max_rel_err": transform["max_rel_err"],
            "latency_deep_ms": forms["deep"]["latency_ms"],
            "latency_shallow_ms": forms["shallow"]["latency_ms"],
            "latency_deep_only_ms": forms["deep-only"]["latency_ms"] if "deep-only" in forms else None,
            "images_seen": transform.get("images_seen", summary.get("images_seen")),
            "depth_found": summary.get("depth_found"), "full_depth": summary.get("full_depth"),
            "memory_saved": summary.get("memory_saved"),
        }
        _ratio(row, compare, "speedup")
        _ratio(row, compare, "speedup_vs_deep_only")
        notes = []
        for form in ("deep", "shallow"):
            throughput = forms[form]["measure"].get("throughput") or {}
            row[f"throughput_{form}"] = throughput.get("images_per_s")
            row[f"energy_{form}_mj"], note = _energy(forms[form])
            if note:
                notes.append(note)
        row["energy_note"] = f"{NOT_MEASURED}: {notes[0]}" if notes else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["runtime", "method", "device", "latency_shallow_ms"],
                              na_position="last", ignore_index=True)
    table.attrs["latency_statistic"] = "/".join(sorted(statistics))
    return table


def latency_unit(table: pd.DataFrame) -> str:
    """'ms, <statistic>': how the table's latency columns were read from the measurements."""
    return f"ms, {table.attrs.get('latency_statistic', 'median')}"


COLUMNS = {
    "method": "Method", "budget": "Budget", "device": "Device", "runtime": "Runtime",
    "top1": "Top-1 (%) [95% CI]", "top1_shallow_file": "Top-1 shallow file (%)",
    "images_seen": "Training images seen (k)",
    "macs_deep": "MMACs deep", "macs_shallow": "MMACs shallow",
    "params_deep": "Params deep (M)", "params_shallow": "Params shallow (M)",
    "layers_deep": "Layers deep", "layers_shallow": "Layers shallow",
    "latency_deep_ms": "Latency deep (ms)", "latency_shallow_ms": "Latency shallow (ms)",
    "speedup": "Speed-up [95% CI]", "speedup_vs_deep_only": "Speed-up vs deep-only [95% CI]",
    "throughput_deep": "Img/s deep", "throughput_shallow": "Img/s shallow",
    "energy_deep_mj": "Energy deep (mJ/img)", "energy_shallow_mj": "Energy shallow (mJ/img)",
    "depth_found": "Depth found / full", "memory_saved": "Memory saved (%)",
}


def _with_interval(value, low, high, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or pd.isna(value):
        return ""
    text = f"{value * scale:.{digits}f}"
    if low is not None and not pd.isna(low):
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def presentable(table: pd.DataFrame) -> pd.DataFrame:
    """Units a reader expects (%, M, MMACs), intervals in brackets and 'not measured' instead of
    empty energy cells."""
    out = table.copy()
    out["top1"] = [_with_interval(v, lo, hi, 100, 1) for v, lo, hi in
                   zip(out["top1"], out["top1_ci_low"], out["top1_ci_high"], strict=True)]
    out["top1_shallow_file"] = out["top1_shallow_file"] * 100
    for name in ("speedup", "speedup_vs_deep_only"):
        out[name] = [_with_interval(v, lo, hi) for v, lo, hi in
                     zip(out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"], strict=True)]
    out["images_seen"] = out["images_seen"] / 1e3
    for col in ("macs_deep", "macs_shallow"):
        out[col] = out[col] / 1e6
    for col in ("params_deep", "params_shallow"):
        out[col] = out[col] / 1e6
    for col in ("energy_deep_mj", "energy_shallow_mj"):
        out[col] = [v if v is not None and not pd.isna(v) else NOT_MEASURED for v in out[col]]
    if out["depth_found"].notna().any():
        out["depth_found"] = [f"{found:.0f} / {full:.0f}" if pd.notna(found) else ""
                              for found, full in zip(out["depth_found"], out["full_depth"], strict=True)]
        out["memory_saved"] = [f"{100 * v:.1f}" if pd.notna(v) else "" for v in out["memory_saved"]]
    else:
        out = out.drop(columns=["depth_found", "memory_saved"])
    if not out["speedup_vs_deep_only"].astype(bool).any():
        out = out.drop(columns=["speedup_vs_deep_only"])
    names = {**COLUMNS, "latency_deep_ms": f"Latency deep ({latency_unit(table)})",
             "latency_shallow_ms": f"Latency shallow ({latency_unit(table)})"}
    return out[[c for c in COLUMNS if c in out]].rename(columns=names)


def write_tables(table: pd.DataFrame, out_dir: Path, stem: str = "main_table") -> list[Path]:
    """CSV (raw values), Markdown and LaTeX (presentable) copies of ``table``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", out_dir / f"{stem}.tex"]
    write_text(paths[0], table.to_csv(index=False))
    nice = presentable(table) if not table.empty else table
    notes = sorted({n for n in table.get("energy_note", []) if n})
    footer = ("\n- Speed-ups: deep, shallow and deep-only timed side by side in interleaved rounds "
              "in one process; 95% paired-bootstrap intervals; identical graphs are 1 by "
              "construction.\n- Top-1: evaluated on the full validation split, 95% Wilson interval;"
              " the shallow file's own top-1 beside it.\n- Training images seen: every image passed "
              "through the network or its supernet in training, over the whole lineage "
              "(weight-sharing supernets count every subnet of a step; docs/training.md).")
    footer += "".join(f"\n- Energy {n}" for n in notes)
    write_text(paths[1], nice.to_markdown(index=False, floatfmt=".3g") + "\n" + footer + "\n")
    write_text(paths[2], nice.to_latex(index=False, float_format="%.3g", na_rep="--"))
    return paths
