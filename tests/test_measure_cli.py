"""``dwnas measure`` and the Python API on the host CPU, with real TorchScript and ONNX files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch

from dwnas.cli import main
from dwnas.errors import DwnasError
from dwnas.measure import MeasureSettings, measure_file, measure_module

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace deprecation

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"
FAST = ["--iters", "3", "--warmup", "1", "--threads", "1"]


def tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A traced TorchScript archive, a static and a dynamic-batch ONNX file, and bad files."""
    folder = tmp_path_factory.mktemp("models")
    net, example = tiny_net(), torch.randn(1, 3, 16, 16)
    torch.jit.trace(net, example).save(str(folder / "net.pt"))
    torch.onnx.export(
        net,
        (example,),
        str(folder / "static.onnx"),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
    )
    torch.onnx.export(
        net,
        (example,),
        str(folder / "dynamic.onnx"),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}},
    )
    torch.save(net.state_dict(), folder / "state_dict.pt")  # a checkpoint, not TorchScript
    (folder / "garbage.onnx").write_bytes(b"not a model at all" * 10)
    (folder / "net.h5").write_bytes(b"whatever")
    return {p.name: p for p in folder.iterdir()}


def _energy_is_number_or_reason(result: dict) -> None:
    assert (result["energy_per_image_mj"] is None) == (result["energy_reason"] is not None)


def test_measure_torchscript_writes_measure_json(models, tmp_path):
    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(models["net.pt"]),
        "--resolution",
        "16",
        "--out",
        str(out),
        "--throughput-batch",
        "2",
        "--channels-last",
        *FAST,
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"]["format"] == "torchscript"
    assert result["input_shape"] == [1, 3, 16, 16]
    assert set(result["latency_ms"]) == {
        "median",
        "mean",
        "p90",
        "std",
        "min",
        "max",
        "iterations",
        "batch",
    }
    assert result["latency_ms"]["iterations"] == 3
    assert result["throughput"]["batch"] == 2 and result["throughput"]["from"] == "throughput_loop"
    assert result["throughput"]["images_per_s"] > 0
    assert result["device"]["threads"] == 1
    assert result["device"]["torch_version"] == torch.__version__
    assert result["settings"]["channels_last"] is True
    _energy_is_number_or_reason(result)
    assert result["tensorrt"] is None and "ONNX" in result["tensorrt_reason"]


def test_measure_onnx_with_trtexec_column(models, tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "trtexec"
    fake.write_text(f"#!/bin/sh\ncat '{FIXTURES / 'trtexec/trt8.txt'}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tools}:{Path('/usr/bin')}:{Path('/bin')}")
    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(models["dynamic.onnx"]),
        "--resolution",
        "16",
        "--out",
        str(out),
        "--throughput-batch",
        "2",
        *FAST,
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"]["providers"] == ["CPUExecutionProvider"]
    assert result["throughput"]["batch"] == 2
    assert result["tensorrt"]["gpu_compute_ms"]["median"] == 1.2085
    assert "--shapes=x:1x3x16x16" in result["tensorrt"]["command"]


def test_static_onnx_batch_gives_null_throughput_with_reason(models):
    settings = MeasureSettings(iters=2, warmup=0, threads=1, throughput_batch=4, trt=False)
    result = measure_file(models["static.onnx"], 16, settings)
    assert result["throughput"] is None
    assert result["throughput_reason"] == "model has a fixed batch size of 1"
    assert result["tensorrt_reason"] == "not requested (trt=false)"


@pytest.mark.parametrize(
    ("name", "resolution", "message"),
    [
        ("missing.pt", 16, "model file not found"),
        ("net.h5", 16, "unknown model format '.h5'"),
        ("net.pt", 0, "--resolution must be between 1 and"),
        ("state_dict.pt", 16, "cannot load as TorchScript"),
        ("garbage.onnx", 16, "cannot load as ONNX"),
        ("static.onnx", 32, "fixed size 16 on axis 2"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(models, tmp_path, capsys, name, resolution, message):
    model = models.get(name, tmp_path / name)
    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(model),
        "--resolution",
        str(resolution),
        "--out",
        str(out),
        *FAST,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    if resolution > 0:
        assert model.name in err  # the error names the offending file
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_cuda_requested_without_gpu_is_an_error(models, tmp_path, capsys):
    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(models["net.pt"]),
        "--resolution",
        "16",
        "--out",
        str(out),
        "--device",
        "cuda",
        *FAST,
    ]
    assert main(argv) == 2
    assert "CUDA requested but torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not out.exists()


def test_measure_module_api_restores_threads():
    before = torch.get_num_threads()
    net = tiny_net().train()
    result = measure_module(net, (3, 12, 12), {"iters": 2, "warmup": 0, "threads": 1})
    assert torch.get_num_threads() == before
    assert result["model"]["format"] == "module"
    assert result["model"]["parameters"] == sum(p.numel() for p in net.parameters())
    assert result["throughput"]["from"] == "latency_loop"
    with pytest.raises(DwnasError, match="batch 2"):
        measure_module(net, (2, 3, 12, 12), {"iters": 1})


def test_measure_is_tracked(models, tmp_path, tracking_on):
    import mlflow

    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(models["net.pt"]),
        "--resolution",
        "16",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(argv) == 0
    runs = mlflow.search_runs(experiment_names=["dwnas"])
    assert list(runs["tags.dwnas.stage"]) == ["measure"]
    assert (
        runs["metrics.latency_ms.median"][0] == json.loads(out.read_text())["latency_ms"]["median"]
    )
    assert runs["params.resolution"][0] == "16"


def test_latency_timer_returns_the_chosen_statistic():
    from torch import nn

    from dwnas.measure.api import latency_timer

    conv = nn.Conv2d(3, 8, 3, padding=1)
    timing = {"warmup": 1, "iters": 20, "threads": 1}
    fastest = latency_timer("host", timing, "min")(conv, (3, 16, 16))
    slow = latency_timer("host", timing, "p90")(conv, (3, 16, 16))
    assert fastest > 0 and slow > 0
    with pytest.raises(DwnasError, match="latency statistic must be one of"):
        latency_timer("host", timing, "fastest")


def test_the_library_functions_run_without_the_command_line(models, tmp_path):
    """Issue 16: the stages are ``dwnas.measure.run.measure`` / ``compare``; the commands only
    parse flags."""
    from dwnas.measure.run import compare, measure

    settings = MeasureSettings(iters=3, warmup=1, threads=1)
    out = tmp_path / "measure.json"
    result = measure(model=models["net.pt"], resolution=16, out=out, settings=settings)
    assert result == json.loads(out.read_text())
    with pytest.raises(DwnasError, match="--canary"):
        compare(models={"deep": models["net.pt"]}, resolution=16, out=tmp_path / "c.json",
                settings=settings, canary="lut.json", remote="localhost:1")
    assert not (tmp_path / "c.json").exists()
