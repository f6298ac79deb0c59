"""The profile and train stages called as library functions, without argparse (issue 16): the
typed keyword ``run`` / ``sweep`` are what a notebook or another stage would call."""

from __future__ import annotations

import json

import pytest
from training_args import SMOKE, recipe

from dwnas.errors import DwnasError


def test_train_run_then_sweep_as_functions(prepared, tmp_path):
    from dwnas.train.run import run, sweep

    summary = run(stage="supernet", prepared=prepared, recipe=recipe(epochs=1),
                  resolution=(32, 32), out=tmp_path / "supernet.pt",
                  summary=tmp_path / "summary.json", space=SMOKE["space"], seed=3,
                  calib_images=16)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"] == written["final"] and summary["stage"] == written["stage"] == "supernet"
    assert (tmp_path / "supernet.pt").is_file()
    curve = sweep(checkpoint=tmp_path / "supernet.pt", prepared=prepared, resolutions=(32, 40, 8),
                  label="fixed", out=tmp_path / "sweep.json", calib_images=16)
    assert curve == json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["subnet"], r["resolution"]) for r in curve["rows"]] == [
        ("largest", 32), ("largest", 40), ("smallest", 32), ("smallest", 40)]


def test_train_run_checks_its_arguments_before_training(tmp_path):
    from dwnas.train.run import run, sweep

    with pytest.raises(DwnasError, match=r"^resolution: min must be >= 16 \(got 8\)$"):
        run(stage="supernet", prepared=tmp_path, recipe=recipe(), resolution=(8, 8),
            out=tmp_path / "s.pt", summary=tmp_path / "s.json", space=SMOKE["space"])
    with pytest.raises(DwnasError, match=r"^--init .*missing\.pt: checkpoint not found$"):
        run(stage="elastic", prepared=tmp_path, recipe=recipe(), resolution=(32, 40),
            out=tmp_path / "e.pt", summary=tmp_path / "e.json", init=tmp_path / "missing.pt")
    with pytest.raises(DwnasError, match=r"^--resolutions 40:32:4: need min <= max"):
        sweep(checkpoint=tmp_path / "none.pt", prepared=tmp_path, resolutions=(40, 32, 4),
              label="x", out=tmp_path / "sweep.json")
    assert not any(tmp_path.iterdir())


def test_profile_run_as_a_function(tmp_path):
    from dwnas.search.profile import run

    out = tmp_path / "profile"
    with pytest.raises(DwnasError, match=r"must cover the space's resolutions"):
        run(space=SMOKE["space"], grid=[36], num_classes=4, out=out)
    summary = run(space=SMOKE["space"], grid=[40, 32, 40], num_classes=4, out=out,
                  settings={"warmup": 1, "iters": 2, "threads": 1}, calibration_archs=0,
                  fidelity_archs=0, rounds=2, round_iters=2)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["grid"] == [32, 40] and summary["canary"]["file"] == "canary.onnx"
    assert (out / "lut.json").is_file() and not (out / "lut_fidelity.json").exists()
