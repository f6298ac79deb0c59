"""Command lines of the training tests (``dwnas train`` on params/smoke.yaml's space and recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

SMOKE = yaml.safe_load((Path(__file__).resolve().parents[1] / "params/smoke.yaml").read_text())


def recipe(**overrides) -> dict:
    base = dict(SMOKE["train"]["supernet"])
    base.pop("resolution")
    base.update(overrides)
    return base


def supernet_args(prepared: Path, out: Path, **overrides) -> list[str]:
    return ["train", "supernet", "--prepared", str(prepared),
            "--space", json.dumps(SMOKE["space"]), "--recipe", json.dumps(recipe(**overrides)),
            "--resolution", "32", "--seed", "3", "--calib-images", "16",
            "--out", str(out / "supernet.pt"), "--summary", str(out / "summary.json")]
