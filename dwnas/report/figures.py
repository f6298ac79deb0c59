"""The paper's figures as PNG and PDF: Pareto, deep vs shallow, accuracy vs resolution, training."""

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


def pareto(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Top-1 vs measured latency of each method's deployed form (first device)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    device = table["device"].dropna().iloc[0] if table["device"].notna().any() else "?"
    data = table[table["device"] == device]
    for i, (method, rows) in enumerate(data.groupby("method", sort=True)):
        rows = rows.sort_values("latency_shallow_ms")
        style = _style(method, i)
        ax.plot(rows["latency_shallow_ms"], rows["top1"] * 100, marker=style["marker"],
                color=style["color"], label=style["label"], ls=style.get("ls", "-"))
        if method == "double-win":
            ax.plot(rows["latency_deep_ms"], rows["top1"] * 100, marker=style["marker"],
                    color=style["color"], mfc="none", ls="--",
                    label="Double-Win (same nets, deep form)")
        for _, r in rows.iterrows():
            ax.annotate(r["budget"], (r["latency_shallow_ms"], r["top1"] * 100), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"measured latency on {device} ({latency_unit(table)}, batch 1)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no point hidden
    return save(fig, out_dir, "pareto")


def deep_vs_shallow(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per method and budget: latency (and energy, when measured) deep vs shallow."""
    data = table.dropna(subset=["latency_deep_ms", "latency_shallow_ms"])
    has_energy = data["energy_shallow_mj"].notna().any()
    per_panel = max(6.0, 0.45 * len(data) + 1.5)  # room for one rotated label per bar pair
    fig, axes = plt.subplots(1, 2 if has_energy else 1, squeeze=False,
                             figsize=(per_panel * (2 if has_energy else 1), 4.5))
    several_devices = data["device"].nunique() > 1
    labels = [f"{m} {b}" + (f" ({d})" if several_devices else "")
              for m, b, d in zip(data["method"], data["budget"], data["device"], strict=True)]
    x = range(len(data))
    panels = [("latency", latency_unit(table), "latency_deep_ms", "latency_shallow_ms")]
    if has_energy:
        panels.append(("energy", "mJ / image", "energy_deep_mj", "energy_shallow_mj"))
    for ax, (name, unit, deep_col, shallow_col) in zip(axes[0], panels, strict=True):
        ax.bar([i - 0.2 for i in x], data[deep_col], width=0.4, label="deep", color="tab:blue")
        ax.bar([i + 0.2 for i in x], data[shallow_col], width=0.4, label="shallow", color="tab:red")
        ax.set_xticks(list(x), labels, fontsize=7, rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_ylabel(f"{name} ({unit})")
        ax.set_title(f"Deep vs shallow {name}" + ("" if several_devices
                                                   else f" on {data['device'].iloc[0]}"))
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if not has_energy:
        notes = sorted({n for n in table["energy_note"] if n})
        if notes:  # as the x label, which sits below the rotated tick labels
            axes[0][0].set_xlabel("Energy " + notes[0], fontsize=7)
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
