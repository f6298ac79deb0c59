"""The paper's main table: per method and budget, accuracy, cost, and deep vs shallow measurements."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dwnas.errors import DwnasError
from dwnas.io import write_text
from dwnas.measure.api import LATENCY_STATISTICS
from dwnas.report.collect import measure_artifact, metric

NOT_MEASURED = "not measured"


def _top1(runs: pd.DataFrame, method: str, budget: str):
    """``results.<budget>.top1`` of the method's latest search or baseline run that has it."""
    stage = runs["tags.dwnas.stage"]
    sources = runs[(stage.str.startswith("search") | stage.str.startswith("baseline_"))
                   & (runs["tags.dwnas.method"] == method)]
    for _, run in sources.iloc[::-1].iterrows():
        value = metric(run, f"results.{budget}.top1")
        if value is not None:
            return value
    return None


def measured_keys(paths) -> set[tuple[str, str, str]]:
    """(method, budget, device) of ``.../measure/<method>/<budget>/<device>/<form>.json`` files:
    the rows the current pipeline produced (older runs of other params stay out of the table)."""
    keys = set()
    for path in paths:
        parts = Path(path).parts
        keys.add((parts[-4], parts[-3], parts[-2]))
    return keys


def main_table(runs: pd.DataFrame, keep: set[tuple[str, str, str]] | None = None,
               statistic: str = "median") -> pd.DataFrame:
    """One row per (method, budget, device), joined from search, transform and measure runs
    (only the keys in ``keep``, when given). Latency is the measurements' ``statistic`` over
    their timed iterations (``table.attrs["latency_statistic"]``).

    A baseline's ``baseline_<method>`` run (dwnas.baselines) is its search and transform in one:
    it carries the transform figures and ``results.<budget>.top1`` itself."""
    if statistic not in LATENCY_STATISTICS:
        raise DwnasError(f"latency statistic must be one of {LATENCY_STATISTICS} (got {statistic!r})")
    if runs.empty:
        return pd.DataFrame()
    stage = runs["tags.dwnas.stage"]
    rows = []
    transforms = runs[(stage == "transform") | stage.str.startswith("baseline_")]
    for _, tr in transforms.iterrows():
        method, budget = tr["tags.dwnas.method"], tr["tags.dwnas.budget"]
        if keep is not None and not any(k[:2] == (method, budget) for k in keep):
            continue
        top1 = _top1(runs, method, budget)
        measures = runs[(stage == "measure") & (runs["tags.dwnas.method"] == method)
                        & (runs["tags.dwnas.budget"] == budget)]
        devices = sorted(set(measures["tags.dwnas.device"])) or [""]
        if keep is not None:
            devices = [d for d in devices if (method, budget, d) in keep] or [""]
        for device in devices:
            row = {
                "method": method, "budget": budget, "device": device or None, "top1": top1,
                "macs_deep": metric(tr, "macs_deep"), "macs_shallow": metric(tr, "macs_shallow"),
                "params": metric(tr, "params_deep"),
                "layers_deep": metric(tr, "layers_deep"), "layers_shallow": metric(tr, "layers_shallow"),
                "max_rel_err": metric(tr, "max_rel_err"),
                # ODN's progressive depth: the depth it stopped at and the parameter memory that
                # saves against its full depth (empty for the methods that do not grow)
                "depth_found": metric(tr, "depth_found"), "full_depth": metric(tr, "full_depth"),
                "memory_saved": metric(tr, "memory_saved"),
            }
            notes = []
            for form in ("deep", "shallow"):
                m = measures[(measures["tags.dwnas.device"] == device)
                             & (measures["tags.dwnas.form"] == form)]
                run = m.iloc[-1] if len(m) else None
                row[f"latency_{form}_ms"] = (metric(run, f"latency_ms.{statistic}")
                                             if run is not None else None)
                row[f"throughput_{form}"] = (metric(run, "throughput_images_per_s")
                                             if run is not None else None)
                energy = metric(run, "energy_per_image_mj") if run is not None else None
                row[f"energy_{form}_mj"] = energy
                if run is not None and energy is None:
                    artifact = measure_artifact(run["run_id"]) or {}
                    notes.append(artifact.get("energy_reason") or "no energy sensor")
            if row["latency_deep_ms"] and row["latency_shallow_ms"]:
                row["speedup"] = row["latency_deep_ms"] / row["latency_shallow_ms"]
            else:
                row["speedup"] = None
            row["energy_note"] = f"{NOT_MEASURED}: {notes[0]}" if notes else ""
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["method", "device", "latency_shallow_ms"], na_position="last",
                              ignore_index=True)
    table.attrs["latency_statistic"] = statistic
    return table


def latency_unit(table: pd.DataFrame) -> str:
    """'ms, <statistic>': how the table's latency columns were read from the measurements."""
    return f"ms, {table.attrs.get('latency_statistic', 'median')}"


COLUMNS = {
    "method": "Method", "budget": "Budget", "device": "Device", "top1": "Top-1 (%)",
    "macs_deep": "MMACs deep", "macs_shallow": "MMACs shallow", "params": "Params (M)",
    "layers_deep": "Layers deep", "layers_shallow": "Layers shallow",
    "latency_deep_ms": "Latency deep (ms)", "latency_shallow_ms": "Latency shallow (ms)",
    "speedup": "Speed-up", "throughput_deep": "Img/s deep", "throughput_shallow": "Img/s shallow",
    "energy_deep_mj": "Energy deep (mJ/img)", "energy_shallow_mj": "Energy shallow (mJ/img)",
    "depth_found": "Depth found / full", "memory_saved": "Memory saved (%)",
}


def presentable(table: pd.DataFrame) -> pd.DataFrame:
    """Units a reader expects (%, M, MMACs) and 'not measured' instead of empty energy cells."""
    out = table.copy()
    out["top1"] = out["top1"] * 100
    for col in ("macs_deep", "macs_shallow"):
        out[col] = out[col] / 1e6
    out["params"] = out["params"] / 1e6
    for col in ("energy_deep_mj", "energy_shallow_mj"):
        out[col] = [v if v is not None and not pd.isna(v) else NOT_MEASURED for v in out[col]]
    if "depth_found" in out and out["depth_found"].notna().any():
        out["depth_found"] = [f"{found:.0f} / {full:.0f}" if pd.notna(found) else ""
                              for found, full in zip(out["depth_found"], out["full_depth"], strict=True)]
        out["memory_saved"] = [f"{100 * v:.1f}" if pd.notna(v) else "" for v in out["memory_saved"]]
    else:
        out = out.drop(columns=["depth_found", "memory_saved"], errors="ignore")
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
    footer = "".join(f"\n- Energy {n}" for n in notes)
    write_text(paths[1], nice.to_markdown(index=False, floatfmt=".3g") + "\n" + footer + "\n")
    write_text(paths[2], nice.to_latex(index=False, float_format="%.3g", na_rep="--"))
    return paths
