"""Training: exact kill-and-resume, 2-process distributed run, bad input, sweep outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_args import SMOKE, recipe, supernet_args

from dwnas.cli import main


def dwnas_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "dwnas", *args]


def test_supernet_training_writes_checkpoint_and_summary(prepared, tmp_path):
    assert main(supernet_args(prepared, tmp_path, epochs=2)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stage"] == "supernet"
    assert len(summary["history"]) == 2
    final = summary["final"]
    for key in ("loss", "lr", "images_per_s", "largest_top1", "smallest_top1", "largest_top5"):
        assert key in final
    assert 0.0 <= final["largest_top1"] <= 1.0
    assert not (tmp_path / "supernet.state.pt").exists(), "rolling state must go once training ends"
    from dwnas.nn.checkpoint import load_supernet

    model, ckpt = load_supernet(tmp_path / "supernet.pt")
    assert ckpt["num_classes"] == 4


def test_kill_and_resume_matches_uninterrupted_run(prepared, tmp_path):
    """SIGKILL mid-epoch, resume: the final weights equal an uninterrupted run's, bitwise."""
    settings = dict(epochs=2, checkpoint_every=3)
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = {**os.environ, "DWNAS_TRACKING": "0"}
    subprocess.run(dwnas_cmd(supernet_args(prepared, full, **settings)), check=True, env=env,
                   capture_output=True)

    proc = subprocess.Popen(dwnas_cmd(supernet_args(prepared, killed, **settings)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "supernet.state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "no intermediate state was written before the kill"
    assert not (killed / "supernet.pt").exists(), "the run finished before it could be killed"
    saved_step = torch.load(state, weights_only=True)["step"]  # plain data: no code runs
    assert 0 < saved_step < 2 * 6

    resumed = subprocess.run(dwnas_cmd(supernet_args(prepared, killed, **settings)), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {state} at step {saved_step}" in resumed.stderr

    a = torch.load(full / "supernet.pt", weights_only=False)["state_dict"]
    b = torch.load(killed / "supernet.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    fa = json.loads((full / "summary.json").read_text())["final"]
    fb = json.loads((killed / "summary.json").read_text())["final"]
    fa.pop("images_per_s"), fb.pop("images_per_s")
    assert fa == fb


def test_two_process_distributed_training(prepared, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "dwnas", *supernet_args(prepared, tmp_path, epochs=1, batch_size=8)]
    env = {**os.environ, "DWNAS_TRACKING": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["final"]["loss"] == summary["final"]["loss"]  # finite, not NaN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "supernet.pt"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(optimizer="adagrad"),
         """train.supernet.optimizer: must be one of ['sgd', 'adamw'] (got "adagrad")"""),
        (dict(batch_size=0), "train.supernet.batch_size: must be >= 1"),
        (dict(lr=-1), "train.supernet.lr: must be > 0"),
        (dict(crop_scale=[0.5, 0.2]), "train.supernet.crop_scale: min (0.5) is above max (0.2)"),
        (dict(hflip="no"), "train.supernet.hflip: must be of type boolean"),
    ],
)
def test_bad_recipe_is_refused(prepared, tmp_path, capsys, overrides, message):
    assert main(supernet_args(prepared, tmp_path, **overrides)) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_elastic_min_above_max_and_missing_init(prepared, tmp_path, capsys):
    base = ["train", "elastic", "--prepared", str(prepared), "--recipe", json.dumps(recipe()),
            "--out", str(tmp_path / "e.pt"), "--summary", str(tmp_path / "s.json")]
    assert main([*base, "--init", str(tmp_path / "nope.pt"), "--resolution-min", "40",
                 "--resolution-max", "32"]) == 2
    assert "min (40) is above max (32)" in capsys.readouterr().err
    assert main([*base, "--init", str(tmp_path / "nope.pt"), "--resolution-min", "32",
                 "--resolution-max", "40"]) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err


def test_missing_manifest(tmp_path, capsys):
    assert main(supernet_args(tmp_path / "nowhere", tmp_path)) == 2
    assert "no train.csv manifest" in capsys.readouterr().err


def test_non_finite_loss_stops_with_a_clear_error(prepared, tmp_path, capsys):
    args = supernet_args(prepared, tmp_path, lr=1e12, grad_clip=None, epochs=3, checkpoint_every=1,
                         optimizer="sgd", momentum=0.0)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "non-finite loss" in err
    assert not (tmp_path / "supernet.pt").exists()


def test_elastic_then_sweep(prepared, tmp_path):
    assert main(supernet_args(prepared, tmp_path, epochs=1)) == 0
    assert main(["train", "elastic", "--prepared", str(prepared), "--init", str(tmp_path / "supernet.pt"),
                 "--recipe", json.dumps(recipe(epochs=1)), "--resolution-min", "32",
                 "--resolution-max", "40", "--calib-images", "16",
                 "--out", str(tmp_path / "elastic.pt"), "--summary", str(tmp_path / "e.json")]) == 0
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["resolution"] == {"min": 32, "max": 40}
    # the budget in images seen: every subnet of every step, and the --init lineage's before it
    first = json.loads((tmp_path / "summary.json").read_text())
    train_images = len((prepared / "train.csv").read_text().splitlines()) - 1
    batch, subnets = recipe()["batch_size"], recipe()["subnets_per_step"]
    assert first["images_seen"] == first["images_seen_total"] == (
        (train_images // batch) * batch * subnets)
    assert summary["images_seen"] == first["images_seen"]
    assert summary["images_seen_total"] == 2 * first["images_seen"]
    assert "largest_top1_r32" in summary["final"]
    assert main(["train", "sweep", "--checkpoint", str(tmp_path / "elastic.pt"), "--prepared",
                 str(prepared), "--resolutions", "32:40:4", "--label", "elastic",
                 "--calib-images", "16", "--out", str(tmp_path / "sweep.json")]) == 0
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["subnet"], r["resolution"]) for r in sweep["rows"]] == [
        ("largest", 32), ("largest", 36), ("largest", 40),
        ("smallest", 32), ("smallest", 36), ("smallest", 40)]
    assert set(sweep["top1_spread"]) == {"largest", "smallest"}


def test_bn_recalibration_matches_batch_statistics():
    """Recalibrated on one batch, a subnet in eval mode reproduces its train-mode output there."""
    from dwnas.nn.supernet import Supernet
    from dwnas.space import Space
    from dwnas.train.evaluate import ImageBank, recalibrate_bn

    torch.manual_seed(0)
    space = Space.from_params(SMOKE["space"])
    subnet = Supernet(space, 4).subnet(space.largest())
    x = torch.randn(16, 3, 40, 40)
    with torch.no_grad():
        train_out = subnet.train()(x)
    recalibrate_bn(subnet, ImageBank(x, torch.zeros(16, dtype=torch.long)), 40, batch_size=16)
    with torch.no_grad():
        eval_out = subnet(x)
    assert not subnet.training
    assert (eval_out - train_out).abs().max() < 1e-2 * train_out.abs().max()
    recalibrate_bn(subnet, ImageBank(torch.cat([x, x]), torch.zeros(32, dtype=torch.long)), 40,
                   batch_size=16)
    with torch.no_grad():
        assert torch.allclose(subnet(x), eval_out, atol=1e-6)
