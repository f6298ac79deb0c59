"""Descriptions of a run: the commit and hardware it ran on, its metrics (numeric leaves), its
params as MLflow holds them, its name."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from typing import Any

# tags whose values name a stage run, in this order (after the stage's own words)
NAME_TAGS = ("dwnas.method", "dwnas.budget", "dwnas.device", "dwnas.runtime", "dwnas.form")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu:{platform.machine()}:{os.cpu_count()}cores"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``a.b.c`` keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numeric_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric leaves of a summary: what MLflow can hold as metrics."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value == value and abs(value) != float("inf"):
            out[key] = float(value)
    return out


def run_name(stage: str, tags: Mapping[str, str]) -> str:
    """What a stage run ran, in words: ``measure double-win 60pct host onnxruntime``."""
    words = stage.replace("_", " ").split()
    for key in NAME_TAGS:
        value = str(tags.get(key, "")).strip()
        if value and value not in words:
            words.append(value)
    return " ".join(words)


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    flat = {k: json.dumps(v) if isinstance(v, list | dict) else v
            for k, v in flatten(params).items()}
    return {k: str(v)[:6000] for k, v in flat.items()}
