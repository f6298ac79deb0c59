"""``dwnas transform``: files and keys on success; exit 2, a clear message and no output on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dwnas.cli import main
from dwnas.space import Arch, BlockArch

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "params/smoke.yaml")
KEYS = {"max_abs_err", "max_rel_err", "layers_deep", "layers_shallow", "params_deep",
        "params_shallow", "macs_deep", "macs_shallow", "resolution", "arch"}
FILES = {"deep.pt2", "shallow.pt2", "deep.onnx", "shallow.onnx", "transform.json"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    assert main(["supernet", "init", "--params", SMOKE, "--num-classes", "4", "--out", str(path)]) == 0
    return path


def transform_args(arch_path, checkpoint, prepared, out) -> list[str]:
    return ["transform", "--arch", str(arch_path), "--checkpoint", str(checkpoint), "--prepared",
            str(prepared), "--calib-images", "24", "--eval-batch", "16", "--out", str(out)]


def write_arch(path: Path, arch: Arch | str) -> Path:
    path.write_text(arch if isinstance(arch, str) else arch.to_json(indent=2))
    return path


MIXED = Arch(((BlockArch(3, 6, True), BlockArch(5, 3, False)), (BlockArch(5, 6, True),)), 36)


def test_success_writes_every_file_with_the_keys(tmp_path, checkpoint, prepared, capsys,
                                                tracking_on):
    import mlflow

    arch_path = write_arch(tmp_path / "arch.json", MIXED)
    out = tmp_path / "out"
    assert main([*transform_args(arch_path, checkpoint, prepared, out), "--params", SMOKE]) == 0
    assert {p.name for p in out.iterdir()} == FILES
    summary = json.loads((out / "transform.json").read_text())
    assert set(summary) >= KEYS
    assert Arch.from_dict(summary["arch"]) == MIXED and summary["resolution"] == 36
    assert summary["max_rel_err"] <= 1e-5
    assert summary["layers_shallow"] == summary["layers_deep"] - 2 * 2  # two linear blocks merged
    assert summary["macs_shallow"] < summary["macs_deep"]
    assert [r["resolution"] for r in summary["verify"]["shallow"]["per_resolution"]] == [36, 37]
    assert all(summary["exports"][name]["max_rel_err"] <= 1e-5 for name in FILES - {"transform.json"})
    assert "depth 14 -> 10" in capsys.readouterr().out

    mlflow.set_tracking_uri(tracking_on)
    runs = mlflow.search_runs(experiment_names=["dwnas"])
    assert list(runs["tags.dwnas.stage"]) == ["transform"]
    assert runs["metrics.max_rel_err"].iloc[0] == summary["max_rel_err"]
    assert runs["metrics.layers_shallow"].iloc[0] == 10

    # the torch.export programs load and run in a process that never imports dwnas
    script = (
        "import sys, warnings, torch\n"
        "warnings.simplefilter('ignore')\n"
        "torch.set_num_threads(1)\n"
        "x = torch.randn(2, 3, 36, 36)\n"
        f"deep = torch.export.load({str(out / 'deep.pt2')!r}).module()(x)\n"
        f"shallow = torch.export.load({str(out / 'shallow.pt2')!r}).module()(x)\n"
        "assert not any(m.startswith('dwnas') for m in sys.modules)\n"
        "print(float((deep - shallow).abs().max() / deep.abs().max()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) <= 1e-5


@pytest.mark.parametrize(
    ("arch_text", "extra", "message"),
    [
        ("{not json", [], "not valid JSON"),
        ('{"stages": [], "resolution": 32, "extra": 1}', [], "arch.json: invalid architecture:\n  extra: unknown key"),
        (MIXED.to_json().replace('"kernel": 5', '"kernel": 7', 1), [],
         "stages[0][1].kernel: 7 not allowed (allowed: [3, 5])"),
        (Arch(MIXED.stages[:1], 36).to_json(), [], "arch has 1 stage(s), the space has 2"),
        (MIXED.with_resolution(37).to_json(), [], "resolution: 37 not allowed"),
        (None, [], "file not found"),
        (MIXED.to_json(), ["--params", str(REPO / "params/default.yaml")],
         "checkpoint of another search space"),
        (MIXED.to_json(), ["--tolerance", "1e-18"], "above the tolerance 1e-18; nothing written"),
    ],
    ids=["bad-json", "unknown-key", "kernel-outside", "stage-count", "resolution", "missing-arch",
         "other-space", "tolerance"],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
        tmp_path, checkpoint, prepared, capsys, arch_text, extra, message):
    arch_path = tmp_path / "arch.json"
    if arch_text is not None:
        arch_path.write_text(arch_text)
    out = tmp_path / "out"
    code = main([*transform_args(arch_path, checkpoint, prepared, out), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_bad_checkpoints_exit_2(tmp_path, prepared, capsys):
    arch_path = write_arch(tmp_path / "arch.json", MIXED)
    notes = tmp_path / "notes.pt"
    notes.write_text("hello")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, plain)
    for path, message in ((tmp_path / "none.pt", "checkpoint not found"),
                          (notes, "not a dwnas supernet checkpoint"),
                          (plain, "not a dwnas supernet checkpoint")):
        out = tmp_path / "out"
        assert main(transform_args(arch_path, path, prepared, out)) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_the_exported_files_score_what_the_search_evaluated(tmp_path, checkpoint, prepared):
    """Issue 11: the files are the evaluated networks (BN recalibrated before export)."""
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.train.evaluate import EvalData, evaluate_subnet

    arch_path = write_arch(tmp_path / "arch.json", MIXED)
    out = tmp_path / "out"
    assert main(transform_args(arch_path, checkpoint, prepared, out)) == 0
    top1 = json.loads((out / "transform.json").read_text())["top1"]
    supernet, _ = load_supernet(checkpoint)
    data = EvalData.load(prepared, max(supernet.space.resolutions()), 24, None, 0, 16)
    searched = evaluate_subnet(supernet, MIXED, MIXED.resolution, data.calib, data.val, 16)
    assert top1["evaluated"] == searched["top1"]
    for name in FILES - {"transform.json"}:
        assert abs(top1[name] - searched["top1"]) <= 0.002, (name, top1)
    assert set(top1) == {"evaluated", *(FILES - {"transform.json"})}  # every file evaluated


def test_the_library_function_runs_without_the_command_line(tmp_path, checkpoint, prepared):
    """Issue 16: the stage is ``dwnas.transform.run.run``; the command only parses flags."""
    from dwnas.transform.run import run

    out = tmp_path / "out"
    summary = run(checkpoint=checkpoint, arch=write_arch(tmp_path / "arch.json", MIXED),
                  prepared=prepared, out=out, runtimes=["onnxruntime"], calib_images=24,
                  eval_batch=16)
    assert {p.name for p in out.iterdir()} == {"deep.onnx", "shallow.onnx", "transform.json"}
    assert summary == json.loads((out / "transform.json").read_text())
