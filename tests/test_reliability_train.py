"""Training resume (issue 13): keyed on contents, safe to load, robust to a corrupt or stale file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from training_args import SMOKE, recipe, supernet_args

from dwnas.cli import main
from dwnas.train.engine import Trainer, TrainJob
from dwnas.train.recipe import Recipe


def elastic_args(prepared: Path, init: Path, out: Path, **overrides) -> list[str]:
    return ["train", "elastic", "--prepared", str(prepared), "--init", str(init),
            "--recipe", json.dumps(recipe(**overrides)), "--resolution-min", "32",
            "--resolution-max", "40", "--seed", "3", "--calib-images", "16",
            "--out", str(out / "elastic.pt"), "--summary", str(out / "summary.json")]


def job(prepared: Path, out: Path, stage: str = "supernet", init: Path | None = None,
        **overrides) -> TrainJob:
    """The job the CLI builds from :func:`supernet_args` / :func:`elastic_args`."""
    resolution = (32, 32) if stage == "supernet" else (32, 40)
    space = SMOKE["space"] if stage == "supernet" else None
    return TrainJob(stage=stage, prepared=prepared, out=out / f"{stage}.pt",
                    summary=out / "summary.json", recipe=Recipe.from_params(recipe(**overrides)),
                    seed=3, resolution=resolution, space=space, init=init, calib_images=16)


class Killed(Exception):
    """Stands for a SIGKILL: raised at the end of the first epoch, before its save."""


def interrupted_state(train_job: TrainJob) -> Path:
    """Train until the first epoch's end and stop there, leaving a mid-run ``.state.pt``."""

    def die(metrics, step):
        raise Killed

    with pytest.raises(Killed):
        Trainer(train_job, on_epoch=die).run()
    assert train_job.state_path.is_file()
    assert not train_job.out.exists()
    return train_job.state_path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_fingerprint_follows_contents_not_paths(prepared, tmp_path):
    """Same paths, other bytes: the init and manifest parts change; checkpoint pacing does not."""
    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    shutil.copytree(Path(prepared).parent / "raw", tmp_path / "raw")  # its images, beside it
    init = tmp_path / "init.pt"
    init.write_bytes(b"one")
    base = job(data, tmp_path, init=init).fingerprint()
    init.write_bytes(b"two")
    assert {k for k, v in job(data, tmp_path, init=init).fingerprint().items()
            if base[k] != v} == {"init"}
    init.write_bytes(b"one")
    (data / "val.csv").write_text((data / "val.csv").read_text() + "\n")
    assert {k for k, v in job(data, tmp_path, init=init).fingerprint().items()
            if base[k] != v} == {"prepared"}
    (data / "val.csv").write_text((prepared / "val.csv").read_text())
    assert job(data, tmp_path, init=init).fingerprint() == base
    assert job(data, tmp_path, init=init, checkpoint_every=7).fingerprint() == base
    changed = job(data, tmp_path, init=init, lr=0.123).fingerprint()
    assert {k for k in base if base[k] != changed[k]} == {"recipe.lr"}
    assert job(data, tmp_path, init=init).fingerprint(world_size=2)["world_size"] != base["world_size"]


def test_elastic_does_not_resume_onto_a_retrained_supernet(prepared, tmp_path, capsys):
    """The issue's scenario: killed in elastic, supernet lr changed and re-trained, rerun."""
    work, clean = tmp_path / "work", tmp_path / "clean"
    assert main(supernet_args(prepared, work, epochs=1)) == 0
    interrupted_state(job(prepared, work, "elastic", init=work / "supernet.pt", epochs=2,
                          checkpoint_every=2))
    assert main(supernet_args(prepared, work, epochs=1, lr=0.01)) == 0  # same path, new bytes
    capsys.readouterr()
    assert main(elastic_args(prepared, work / "supernet.pt", work, epochs=2,
                             checkpoint_every=2)) == 0
    err = capsys.readouterr().err
    assert "resumed from" not in err
    assert f"not resuming from {work / 'elastic.state.pt'}" in err
    assert "(differs: the --init checkpoint's contents); starting fresh" in err
    assert main(elastic_args(prepared, work / "supernet.pt", clean, epochs=2,
                             checkpoint_every=2)) == 0
    assert_same_weights(work / "elastic.pt", clean / "elastic.pt")


def test_changed_manifest_starts_fresh(prepared, tmp_path, capsys):
    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    shutil.copytree(Path(prepared).parent / "raw", tmp_path / "raw")  # its images, beside it
    interrupted_state(job(data, tmp_path, epochs=2, checkpoint_every=2))
    lines = (data / "val.csv").read_text().splitlines(keepends=True)
    (data / "val.csv").write_text("".join(lines[:-1]))  # one validation image fewer
    capsys.readouterr()
    assert main(supernet_args(data, tmp_path, epochs=2, checkpoint_every=2)) == 0
    err = capsys.readouterr().err
    assert "resumed from" not in err
    assert "(differs: the prepared manifests (train.csv, val.csv, classes.json))" in err


def test_planted_pickle_is_not_executed(prepared, tmp_path, capsys):
    """A state whose unpickling would run code is refused by weights_only loading."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = tmp_path / "supernet.state.pt"
    torch.save({"fingerprint": {}, "step": 1, "payload": Payload()}, state)
    assert main(supernet_args(prepared, tmp_path, epochs=1)) == 0
    assert not marker.exists(), "loading the state file ran code"
    err = capsys.readouterr().err
    assert f"not resuming from {state}: cannot read it" in err
    assert (tmp_path / "supernet.pt").is_file()
    assert not state.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_state_is_logged_and_training_starts_fresh(prepared, tmp_path, capsys, damage):
    clean = tmp_path / "clean"
    assert main(supernet_args(prepared, clean, epochs=2, checkpoint_every=2)) == 0
    state = interrupted_state(job(prepared, tmp_path, epochs=2, checkpoint_every=2))
    blob = state.read_bytes()
    state.write_bytes({"truncated": blob[: len(blob) // 2], "empty": b"",
                       "garbage": b"\x00" * 1000}[damage])
    capsys.readouterr()
    assert main(supernet_args(prepared, tmp_path, epochs=2, checkpoint_every=2)) == 0
    err = capsys.readouterr().err
    assert f"not resuming from {state}: cannot read it" in err
    assert_same_weights(tmp_path / "supernet.pt", clean / "supernet.pt")


def test_state_whose_weights_do_not_fit_restarts_cleanly(prepared, tmp_path, capsys):
    """A matching fingerprint but a damaged model dict: rebuilt from scratch, equal to a clean run."""
    clean = tmp_path / "clean"
    assert main(supernet_args(prepared, clean, epochs=2, checkpoint_every=2)) == 0
    state_path = interrupted_state(job(prepared, tmp_path, epochs=2, checkpoint_every=2))
    state = torch.load(state_path, weights_only=True)
    state["model"] = {k: v for i, (k, v) in enumerate(state["model"].items()) if i % 2}
    torch.save(state, state_path)
    capsys.readouterr()
    assert main(supernet_args(prepared, tmp_path, epochs=2, checkpoint_every=2)) == 0
    assert "its weights do not fit this model" in capsys.readouterr().err
    assert_same_weights(tmp_path / "supernet.pt", clean / "supernet.pt")


def test_in_process_interrupt_then_resume_is_exact(prepared, tmp_path, capsys):
    """The saved RNG states (tensors and plain types only) resume bitwise."""
    clean = tmp_path / "clean"
    assert main(supernet_args(prepared, clean, epochs=2, checkpoint_every=5)) == 0
    state = interrupted_state(job(prepared, tmp_path, epochs=2, checkpoint_every=5))
    step = torch.load(state, weights_only=True)["step"]
    capsys.readouterr()
    assert main(supernet_args(prepared, tmp_path, epochs=2, checkpoint_every=5)) == 0
    assert f"resumed from {state} at step {step}" in capsys.readouterr().err
    assert_same_weights(tmp_path / "supernet.pt", clean / "supernet.pt")


def test_leftover_temporaries_of_this_output_are_removed(prepared, tmp_path, capsys):
    ours = [tmp_path / ".supernet.state.pt.k2j4h1x0.tmp", tmp_path / ".supernet.pt.a8b7c6d5.tmp",
            tmp_path / ".summary.json.zz9y8x7w.tmp"]
    others = [tmp_path / ".other.pt.k2j4h1x0.tmp", tmp_path / "supernet.pt.tmp",
              tmp_path / ".supernet.state.pt.k2j4h1x0.old"]
    for path in ours + others:
        path.write_bytes(b"")
    assert main(supernet_args(prepared, tmp_path, epochs=1)) == 0
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in others)
    assert "removed leftover temporary files" in capsys.readouterr().err
