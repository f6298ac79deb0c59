"""Params files: every shipped file validates; bad keys and values are named by their path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dwnas.cli import main
from dwnas.config import load_params, params_hash, validate_params
from dwnas.errors import DwnasError

REPO = Path(__file__).resolve().parents[1]
PARAMS = sorted((REPO / "params").glob("*.yaml"))


def test_every_shipped_params_file_is_valid():
    assert {p.name for p in PARAMS} >= {
        "default.yaml",
        "smoke.yaml",
        "imagenet.yaml",
        "imagenet100.yaml",
    }
    for path in PARAMS:
        params = load_params(path)
        assert params["name"] == path.stem


@pytest.fixture
def smoke():
    return load_params(REPO / "params/smoke.yaml")


def _problem(params) -> str:
    with pytest.raises(DwnasError) as info:
        validate_params(params, "p.yaml")
    return str(info.value)


def test_bad_values_are_reported_by_key_path(smoke):
    bad = copy.deepcopy(smoke)
    bad["data"]["workers"] = -1
    bad["space"]["stages"][1]["stride"] = 3
    bad["data"]["on_corrupt"] = "ignore"
    message = _problem(bad)
    assert "data.workers: must be >= 0" in message
    assert "space.stages[1].stride: must be one of [1, 2]" in message
    assert "data.on_corrupt: must be one of ['fail', 'skip']" in message
    assert message.startswith("p.yaml is invalid")


def test_unknown_and_missing_keys(smoke):
    bad = copy.deepcopy(smoke)
    bad["data"]["wokers"] = 2
    del bad["seed"]
    message = _problem(bad)
    assert "data.wokers: unknown key" in message
    assert "seed: missing required key" in message


def test_min_above_max_is_caught(smoke):
    bad = copy.deepcopy(smoke)
    bad["space"]["resolution"] = {"min": 64, "max": 32, "step": 4}
    assert "space.resolution: min (64) is above max (32)" in _problem(bad)


def test_odn_start_depth_is_one_number_or_one_per_backbone(smoke):
    per_backbone = copy.deepcopy(smoke)
    per_backbone["baselines"]["odn"]["start_depth"] = {"resnet18": 4, "mbconv": 1}
    assert validate_params(per_backbone)["baselines"]["odn"]["start_depth"]["resnet18"] == 4
    missing = copy.deepcopy(per_backbone)
    del missing["baselines"]["odn"]["start_depth"]["mbconv"]
    assert ("baselines.odn.start_depth: names no start depth for backbone 'mbconv'"
            in _problem(missing))
    bad = copy.deepcopy(per_backbone)
    bad["baselines"]["odn"]["start_depth"] = {"resnet18": 0, "vgg": 2}
    message = _problem(bad)  # the mapping's own problems, not "must be of type integer"
    assert "baselines.odn.start_depth.resnet18: must be >= 1 (got 0)" in message
    assert "baselines.odn.start_depth.vgg: unknown key" in message
    assert "type integer" not in message
    bad["baselines"]["odn"]["start_depth"] = 0
    assert "baselines.odn.start_depth: must be >= 1 (got 0)" in _problem(bad)


def test_not_a_mapping_and_missing_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(DwnasError, match="must be a YAML mapping"):
        load_params(path)
    with pytest.raises(DwnasError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_params_hash_is_stable_and_sensitive(smoke):
    changed = copy.deepcopy(smoke)
    changed["seed"] = 1
    assert params_hash(smoke) == params_hash(copy.deepcopy(smoke))
    assert params_hash(smoke) != params_hash(changed)


def test_cli_params_check(tmp_path, capsys):
    assert main(["params", "check", str(REPO / "params/smoke.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
    bad = load_params(REPO / "params/smoke.yaml")
    bad["seed"] = "zero"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["params", "check", str(path)]) == 2
    assert "seed: must be of type integer" in capsys.readouterr().err


def test_building_the_cli_imports_no_framework():
    """`dwnas --help` and argument errors stay fast: no torch import while parsers are built."""
    import subprocess
    import sys

    code = "import sys; from dwnas.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
