"""The paper's figures as PNG and PDF: Pareto, deep vs shallow, accuracy vs resolution, training;
and the latency-table fidelity scatter ``dwnas profile`` writes (:func:`plot_fidelity`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dwnas.io import atomic_path  # noqa: E402
from dwnas.report.tables import latency_unit  # noqa: E402

METHOD_STYLE = {
    "double-win": {"color": "tab:red", "marker": "o", "label": "Double-Win (shallow)"},
    "deep-only": {"color": "tab:blue", "marker": "s", "label": "Deep-only NAS"},
    "depthshrinker": {"color": "tab:green", "marker": "^", "label": "DepthShrinker-style"},
    "hurricane": {"color": "tab:purple", "marker": "D", "label": "HURRICANE-style"},
    "mobilenetv2": {"color": "tab:gray", "marker": "v", "label": "MobileNetV2"},
    # one point per backbone, not a trade-off curve: markers only
    "odn": {"color": "tab:brown", "marker": "P", "label": "ODN", "ls": "none"},
}
FALLBACK_MARKERS = "D^vP*Xh"


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _style(method: str, i: int) -> dict:
    return METHOD_STYLE.get(method, {"color": f"C{i + 2}", "marker": FALLBACK_MARKERS[i % 7],
                                     "label": method})


def _panels(table: pd.DataFrame, extra_width: float = 0.0, height: float = 4.2):
    """One panel per runtime (first device), side by side."""
    device = table["device"].dropna().iloc[0] if table["device"].notna().any() else "?"
    runtimes = sorted(table["runtime"].dropna().unique()) or ["?"]
    fig, axes = plt.subplots(1, len(runtimes), squeeze=False,
                             figsize=((6.0 + extra_width) * len(runtimes), height))
    return fig, device, [(ax, runtime, table[(table["device"] == device)
                                              & (table["runtime"] == runtime)])
                         for ax, runtime in zip(axes[0], runtimes, strict=True)]


def pareto(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Top-1 (95% interval) vs measured latency of each method's deployed form, per runtime."""
    fig, device, panels = _panels(table)
    for n, (ax, runtime, data) in enumerate(panels):
        for i, (method, rows) in enumerate(data.groupby("method", sort=True)):
            rows = rows.sort_values("latency_shallow_ms")
            style = _style(method, i)
            errors = [(rows["top1"] - rows["top1_ci_low"]) * 100,
                      (rows["top1_ci_high"] - rows["top1"]) * 100]
            ax.errorbar(rows["latency_shallow_ms"], rows["top1"] * 100, yerr=errors, capsize=2,
                        marker=style["marker"], color=style["color"], label=style["label"],
                        ls=style.get("ls", "-"))
            if method == "double-win":
                ax.plot(rows["latency_deep_ms"], rows["top1"] * 100, marker=style["marker"],
                        color=style["color"], mfc="none", ls="--",
                        label="Double-Win (same nets, deep form)")
            for _, r in rows.iterrows():
                ax.annotate(r["budget"], (r["latency_shallow_ms"], r["top1"] * 100), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"measured latency on {device}, {runtime} ({latency_unit(table)}, batch 1)")
        ax.set_ylabel("top-1 accuracy (%, 95% interval)")
        ax.set_title(f"Accuracy vs latency ({runtime})")
        ax.grid(alpha=0.3)
        if n == len(panels) - 1:  # outside the last panel: no point hidden
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out_dir, "pareto")


def deep_vs_shallow(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per row: the speed-up of the shallow form over the deep one (and over deep-only at the
    same budget) with its 95% interval, from interleaved timings; one panel per runtime."""
    rows = table.dropna(subset=["speedup"])
    widest = int(rows.groupby("runtime").size().max()) if len(rows) else 1
    fig, device, panels = _panels(rows, extra_width=max(0.0, 0.4 * widest - 3.0), height=4.8)
    for ax, runtime, data in panels:
        data = data.reset_index(drop=True)
        x = range(len(data))
        for offset, name, colour, label in ((-0.18, "speedup", "tab:red", "shallow vs its deep form"),
                                            (0.18, "speedup_vs_deep_only", "tab:blue",
                                             "shallow vs deep-only, same budget")):
            if name not in data or data[name].isna().all():
                continue
            part = data[data[name].notna()]
            low = (part[name] - part[f"{name}_ci_low"]).fillna(0)
            high = (part[f"{name}_ci_high"] - part[name]).fillna(0)
            ax.errorbar([i + offset for i in part.index], part[name], yerr=[low, high], fmt="o",
                        color=colour, capsize=3, label=label)
        ax.axhline(1.0, color="black", lw=1)
        ax.set_xticks(list(x), [f"{m} {b}" for m, b in zip(data["method"], data["budget"],
                                                           strict=True)],
                      fontsize=7, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_ylabel("speed-up (x, 95% interval)")
        ax.set_title(f"Shallow vs deep on {device}, {runtime} (1 = same graph or no gain)",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        notes = sorted({n for n in data["energy_note"] if n})
        if notes:  # as the x label, which sits below the rotated tick labels
            ax.set_xlabel("Energy " + notes[0], fontsize=7)
    return save(fig, out_dir, "deep_vs_shallow")


def resolution_sweep(sweeps: list[dict], out_dir: Path) -> list[Path]:
    """Top-1 vs input resolution, elastic vs non-elastic, largest and smallest subnet."""
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"elastic": "tab:red", "non-elastic": "tab:blue"}
    for sweep in sweeps:
        rows = pd.DataFrame(sweep["rows"])
        for subnet, ls in (("largest", "-"), ("smallest", "--")):
            part = rows[rows["subnet"] == subnet].sort_values("resolution")
            ax.plot(part["resolution"], part["top1"] * 100, ls=ls, marker=".",
                    color=colours.get(sweep["label"]),
                    label=f"{sweep['label']}, {subnet} (spread {100 * sweep['top1_spread'][subnet]:.1f} pts)")
    ax.set_xlabel("input resolution (px)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs resolution (BN recalibrated per resolution)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out_dir, "accuracy_vs_resolution")


def training_curves(histories: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Loss and top-1 of the largest / smallest subnet per epoch, supernet then elastic."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    offset = 0
    for stage, hist in histories.items():
        if hist.empty:
            continue
        for name, ax, scale in (("loss", ax_loss, 1), ("largest_top1", ax_acc, 100),
                                ("smallest_top1", ax_acc, 100)):
            part = hist[hist["metric"] == name].sort_values("step")
            if part.empty:
                continue
            ax.plot(part["step"] + offset, part["value"] * scale, marker=".",
                    ls="-" if "smallest" not in name else "--",
                    label=f"{stage}: {name.replace('_top1', '')}")
        offset += int(hist["step"].max())
    ax_loss.set_ylabel("training loss (largest subnet)")
    ax_acc.set_ylabel("validation top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Training: hybrid transformable supernet, then elastic resolution")
    return save(fig, out_dir, "training_curves")


def lut_fidelity(random_sets: dict[str, dict], pipeline: dict, out_dir: Path) -> list[Path]:
    """Predicted vs measured latency per runtime: random archs (the profile's check) and the
    networks the pipeline measured (the check that matters), with the +-10% band."""
    runtimes = sorted(set(random_sets) | set(pipeline.get("summary", {})))
    fig, axes = plt.subplots(1, max(1, len(runtimes)), squeeze=False,
                             figsize=(5.2 * max(1, len(runtimes)), 5))
    for ax, runtime in zip(axes[0], runtimes, strict=False):
        rows_random = (random_sets.get(runtime) or {}).get("rows", [])
        rows_pipe = [r for r in pipeline.get("rows", []) if r["runtime"] == runtime]
        values = [v for r in rows_random + rows_pipe for v in (r["measured_ms"], r["predicted_ms"],
                                                                 r.get("predicted_drift_corrected_ms"))
                  if v is not None]
        if not values:
            continue
        lo, hi = min(values) * 0.9, max(values) * 1.1
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey",
                        alpha=0.2, label="±10%")
        if rows_random:
            s = random_sets[runtime]["summary"]["all"]
            ax.scatter([r["measured_ms"] for r in rows_random], [r["predicted_ms"] for r in rows_random],
                       s=14, color="0.55", marker=".",
                       label=f"random archs: {100 * s['within_10pct']:.0f}% within ±10% (n={s['n']})")
        for i, (method, group) in enumerate(pd.DataFrame(rows_pipe).groupby("method") if rows_pipe
                                            else []):
            style = _style(method, i)
            for form, filled in (("deep", False), ("shallow", True)):
                part = group[group["form"] == form]
                corrected = part.get("predicted_drift_corrected_ms")
                if corrected is not None and corrected.notna().all():
                    # the raw prediction as a small grey tick, joined to the corrected one
                    ax.vlines(part["measured_ms"], part["predicted_ms"], corrected, color="0.6", lw=0.8)
                    ax.scatter(part["measured_ms"], part["predicted_ms"], marker="_", color="0.4", s=30)
                    shown = corrected
                else:
                    shown = part["predicted_ms"]
                ax.scatter(part["measured_ms"], shown, marker=style["marker"],
                           color=style["color"], facecolors=style["color"] if filled else "none",
                           s=30, label=f"{style['label']} {form}")
        s = pipeline.get("summary", {}).get(runtime)
        title = f"{runtime}"
        if s:
            title += f": pipeline nets {100 * s['within_10pct']:.0f}% within ±10% (n={s['n']})"
            if s.get("drift_corrected"):
                title += (f";\n{100 * s['drift_corrected']['within_10pct']:.0f}% after the "
                          "canary's drift correction (grey tick: raw)")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured latency (ms, batch 1)")
        ax.set_ylabel("latency-table prediction (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle("Latency table fidelity")
    return save(fig, out_dir, "lut_fidelity")


def plot_fidelity(result: dict, path: str | Path) -> None:
    """Scatter of predicted vs measured latency, deep and shallow, with the +-10% band: the
    random-arch check of one latency table (``dwnas profile``'s ``lut_fidelity.png``)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    values = [r["measured_ms"] for r in result["rows"]] + [r["predicted_ms"] for r in result["rows"]]
    lo, hi = min(values) * 0.9, max(values) * 1.1
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.2,
                    label="±10%")
    for form, marker in (("deep", "o"), ("shallow", "^")):
        rows = [r for r in result["rows"] if r["form"] == form]
        s = result["summary"][form]
        ax.scatter([r["measured_ms"] for r in rows], [r["predicted_ms"] for r in rows], marker=marker,
                   s=22, label=f"{form}: MAPE {100 * s['mape']:.1f}%, {100 * s['within_10pct']:.0f}% within ±10%")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, batch 1)")
    ax.set_ylabel("latency-table prediction (ms)")
    ax.set_title(f"Latency table fidelity on {result['device']} ({result['archs']} random archs)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def merge_gains(tables: dict, out_dir: Path) -> list[Path]:
    """Where merging pays: per block configuration of the space and grid resolution, the latency
    of the block unmerged (folded MBConv) against the same block merged into one dense conv, from
    each runtime's latency table. Points below the diagonal are blocks a linear merge speeds up."""
    runtimes = sorted(tables)
    fig, axes = plt.subplots(1, max(1, len(runtimes)), squeeze=False,
                             figsize=(5.2 * max(1, len(runtimes)), 5))
    kernels_colour = {3: "tab:blue", 5: "tab:orange", 7: "tab:red"}
    expand_marker = {1: "x", 3: "o", 4: "s", 6: "^"}
    for ax, runtime in zip(axes[0], runtimes, strict=False):
        table = tables[runtime]
        points = []
        for res, entries in table.entries.items():
            for key, folded in entries.items():
                if not key.endswith(".folded"):
                    continue
                merged = entries.get(key.removesuffix(".folded") + ".merged")
                if merged is None:
                    continue
                stage, position, kernel, expand = key.split(".")[:4]
                points.append({"res": int(res), "folded": folded, "merged": merged,
                               "kernel": int(kernel[1:]), "expand": int(expand[1:])})
        if not points:
            continue
        frame = pd.DataFrame(points)
        for (kernel, expand), part in frame.groupby(["kernel", "expand"]):
            ax.scatter(part["folded"], part["merged"], s=22,
                       color=kernels_colour.get(kernel, "tab:gray"),
                       marker=expand_marker.get(expand, "D"), label=f"k{kernel} e{expand}")
        lo = min(frame["folded"].min(), frame["merged"].min()) * 0.8
        hi = max(frame["folded"].max(), frame["merged"].max()) * 1.2
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        pays = int((frame["merged"] < frame["folded"]).sum())
        ax.set_title(f"{runtime} on {table.device}: merging pays in {pays} of {len(frame)} "
                     f"(block, resolution)", fontsize=9)
        ax.set_xlabel("block unmerged, BN folded (ms)")
        ax.set_ylabel("block merged into one conv (ms)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle("Where merging a linear block pays (below the diagonal)")
    return save(fig, out_dir, "merge_gains")
