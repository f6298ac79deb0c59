"""Jetson measurement against fixture sysfs trees (no board here) and stand-in device tools.

The fixture trees under tests/fixtures/jetson copy the layouts of JetPack 4 (iio) and JetPack 5
(hwmon); the stand-in ``tegrastats`` / ``trtexec`` scripts print recorded output, which is what
the real tools' text looks like to the code under test.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import torch

from dwnas.cli import main
from dwnas.errors import DwnasError
from dwnas.measure.backends import JetsonBackend
from dwnas.measure.jetson import Ina3221Meter, require_jetson
from dwnas.measure.settings import MeasureSettings
from dwnas.measure.tegrastats import TegrastatsMeter
from dwnas.measure.tensorrt import run_trtexec

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace deprecation

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"


def _write_atomically(path: Path, text: str) -> None:
    """Change a fixture sensor the way the kernel does: a reader never sees a half-written value."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


def _sampled(meter: Ina3221Meter, vdd_in_mw: float, timeout: float = 60.0) -> bool:
    """Wait until the meter's thread (not its synchronous first sample) has read VDD_IN at
    ``vdd_in_mw``: sleeps guessed this before, and a busy machine could miss it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(powers["VDD_IN"] == pytest.approx(vdd_in_mw) for _, powers in meter._samples[1:]):
            return True
        time.sleep(0.005)
    return False


def test_sampled_energy_follows_a_changing_hwmon_sensor(tmp_path):
    root = tmp_path / "orin"
    shutil.copytree(FIXTURES / "orin-nano-jp5", root)
    current = next(root.glob("sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*/curr1_input"))
    meter = Ina3221Meter(root, interval_ms=5)
    assert meter.source == "ina3221-hwmon"
    meter.start()
    assert _sampled(meter, 5000.0), "the sampler thread never read the sensor"
    _write_atomically(current, "2000\n")  # VDD_IN steps from 5000 mW to 10000 mW
    assert _sampled(meter, 10000.0), "the sampler thread missed the change"
    result = meter.stop(images=10)
    assert result["total_rail"] == "VDD_IN"
    assert result["samples"] >= 3
    assert 5000.0 < result["rails_mean_mw"]["VDD_IN"] < 10000.0
    assert result["rails_mean_mw"]["VDD_SOC"] == pytest.approx(1500.0)  # unchanged rail
    assert result["energy_mj"] == pytest.approx(result["mean_power_mw"] * result["duration_s"])
    assert result["per_image_mj"] == pytest.approx(result["energy_mj"] / 10)


def test_jetson_backend_on_a_jetpack4_tree():
    settings = MeasureSettings(
        device="jetson",
        iters=4,
        warmup=1,
        threads=1,
        sysfs_root=str(FIXTURES / "nano-jp4"),
        sample_interval_ms=5,
    )
    result = JetsonBackend(settings.sysfs_root).measure(tiny_net(), (3, 16, 16), settings)
    assert result["backend"] == "jetson"
    assert result["energy"]["source"] == "ina3221-iio"
    assert result["power_mw"] == pytest.approx(
        {"POM_5V_IN": 3000.0, "POM_5V_GPU": 500.0, "POM_5V_CPU": 1000.0, "total": 3000.0}
    )
    loop = result["energy"]["latency_loop"]
    assert loop["total_rail"] == "POM_5V_IN"
    assert loop["energy_mj"] == pytest.approx(3000.0 * loop["duration_s"])
    assert result["energy_per_image_mj"] == pytest.approx(loop["energy_mj"] / 4)
    device = result["device"]
    assert device["jetson"]["model"] == "NVIDIA Jetson Nano Developer Kit"
    assert device["jetson"]["power_mode"] == {"name": "MAXN", "id": 0}
    assert device["clocks"]["gpu"]["device"] == "57000000.gpu"
    if not torch.cuda.is_available():
        assert any("measured on the CPU" in note for note in result["notes"])


def test_jetson_backend_without_sensors_says_why(tmp_path):
    """A Jetson (L4T release file) whose INA3221 rails are not exposed: energy null, with why."""
    (tmp_path / "etc").mkdir()
    shutil.copy(FIXTURES / "nano-jp4/etc/nv_tegra_release", tmp_path / "etc/nv_tegra_release")
    settings = MeasureSettings(
        device="jetson", iters=2, warmup=0, threads=1, sysfs_root=str(tmp_path)
    )
    result = JetsonBackend(tmp_path).measure(tiny_net(), (3, 8, 8), settings)
    assert result["energy_per_image_mj"] is None
    assert "no INA3221 power rails" in result["energy_reason"]
    assert "tegrastats not tried" in result["energy_reason"]
    assert result["power_mw"] is None
    assert result["device"]["jetson"]["model"] is None
    assert result["device"]["jetson"]["l4t_release"].startswith("R32.")


def test_require_jetson_accepts_the_fixture_boards_and_any_one_sign(tmp_path):
    for board in ("nano-jp4", "xavier-jp4", "orin-nano-jp5", "agx-orin-jp5"):
        require_jetson(FIXTURES / board)
    release, model, hwmon = tmp_path / "release", tmp_path / "model", tmp_path / "hwmon"
    (release / "etc").mkdir(parents=True)
    (release / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1\n")
    (model / "proc/device-tree").mkdir(parents=True)
    (model / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")
    (hwmon / "sys/bus/i2c/drivers/ina3221").mkdir(parents=True)
    for root in (release, model, hwmon):
        require_jetson(root)


def test_require_jetson_refuses_another_machine(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("Raspberry Pi 4 Model B\x00")
    with pytest.raises(DwnasError) as caught:
        require_jetson(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"--device jetson: {tmp_path} does not look like a Jetson")
    assert str(tmp_path / "etc/nv_tegra_release") in message
    assert str(tmp_path / "sys/bus/i2c/drivers/ina3221") in message  # where rails were sought


def test_measure_device_jetson_off_a_jetson_is_an_error(tmp_path, capsys):
    """Needs the backend to call require_jetson when it is built (dwnas/measure/backends.py)."""
    model = tmp_path / "net.pt"
    torch.jit.trace(tiny_net().eval(), torch.randn(1, 3, 8, 8)).save(str(model))
    out = tmp_path / "measure.json"
    empty = tmp_path / "root"
    empty.mkdir()
    argv = ["measure", "--model", str(model), "--resolution", "8", "--out", str(out),
            "--device", "jetson", "--sysfs-root", str(empty), "--iters", "2", "--warmup", "0",
            "--threads", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device jetson: ") and "does not look like a Jetson" in err
    assert not out.exists()
    with pytest.raises(DwnasError, match="does not look like a Jetson"):
        JetsonBackend(empty)


def test_tegrastats_runner_integrates_printed_rails(tmp_path):
    line = (FIXTURES / "tegrastats/orin-nano-jp5.txt").read_text().strip()
    fake = _script(tmp_path / "tegrastats", f"while true; do echo '{line}'; sleep 0.05; done\n")
    meter = TegrastatsMeter(interval_ms=100, command=[str(fake)])
    meter.start()
    time.sleep(0.2)
    result = meter.stop(images=4)
    assert result["total_rail"] == "VDD_IN"
    assert result["mean_power_mw"] == pytest.approx(4937.0)
    assert result["rails_mean_mw"]["VDD_SOC"] == pytest.approx(1430.0)
    assert result["energy_mj"] == pytest.approx(4937.0 * result["duration_s"])
    assert meter._proc is None  # the tegrastats process was stopped


def test_trtexec_runner_parses_and_reports_failures(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    output = FIXTURES / "trtexec/trt8.txt"
    good = _script(tmp_path / "trtexec", f"cat '{output}'\n")
    stats, reason = run_trtexec(onnx, iterations=10, timeout_s=30, fp16=True, trtexec=str(good))
    assert reason is None
    assert stats["gpu_compute_ms"]["median"] == 1.2085
    assert stats["precision"] == "fp16"
    assert stats["command"][1:] == [f"--onnx={onnx}", "--iterations=10", "--fp16"]
    bad = _script(tmp_path / "trtexec-bad", "echo '[E] Error: ModelImporter failed'; exit 1\n")
    stats, reason = run_trtexec(onnx, iterations=10, timeout_s=30, trtexec=str(bad))
    assert stats is None
    assert reason == "trtexec failed (exit 1): [E] Error: ModelImporter failed"
