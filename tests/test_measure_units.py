"""Measurement arithmetic and parsers, checked exactly on synthetic numbers and fixture text."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dwnas.errors import DwnasError
from dwnas.measure import meters
from dwnas.measure.jetson import discover_rails, sensor_update_interval_ms
from dwnas.measure.meters import CounterMeter, SensorError
from dwnas.measure.rapl import RaplMeter, energy_delta_uj
from dwnas.measure.settings import MeasureSettings
from dwnas.measure.stats import (
    energy_result,
    integrate_power,
    latency_stats,
    percentile,
    summarise_power,
    unmeasured_energy,
)
from dwnas.measure.sysinfo import clocks, jetson_description, parse_nvpmodel_query
from dwnas.measure.tegrastats import parse_tegrastats_line
from dwnas.measure.tensorrt import parse_trtexec_output

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"


def test_percentile_matches_numpy():
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3])
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_latency_stats_in_ms():
    stats = latency_stats([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    assert stats["median"] == 2.5
    assert stats["mean"] == 2.5
    assert stats["min"] == 1.0 and stats["max"] == 4.0
    assert stats["iterations"] == 4
    assert stats["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert stats["p90"] == pytest.approx(np.percentile([1, 2, 3, 4], 90))


def test_trapezoid_integration_is_exact():
    # 1000 mW for 1 s, then a linear ramp 1000 -> 3000 mW over 2 s: 1000 + 4000 = 5000 mJ.
    samples = [
        (0, {"VDD_IN": 1000.0}),
        (1_000_000_000, {"VDD_IN": 1000.0}),
        (3_000_000_000, {"VDD_IN": 3000.0}),
    ]
    assert integrate_power(samples) == {"VDD_IN": 5000.0}
    summary = summarise_power(samples, images=10)
    assert summary["energy_mj"] == 5000.0
    assert summary["per_image_mj"] == 500.0
    assert summary["duration_s"] == 3.0
    assert summary["mean_power_mw"] == pytest.approx(5000.0 / 3.0)
    assert summary["total_rail"] == "VDD_IN"


def test_total_is_input_rail_else_sum_else_configured():
    samples = [(0, {"GPU": 100.0, "CPU": 300.0}), (2_000_000_000, {"GPU": 100.0, "CPU": 300.0})]
    summed = summarise_power(samples, images=4)
    assert summed["total_rail"] == "sum_of_rails"
    assert summed["energy_mj"] == 800.0
    assert summed["rails_mean_mw"] == {"CPU": 300.0, "GPU": 100.0}
    chosen = summarise_power(samples, images=4, configured_total="CPU")
    assert chosen["total_rail"] == "CPU" and chosen["energy_mj"] == 600.0
    with pytest.raises(KeyError, match="VDD_IN"):
        summarise_power(samples, images=4, configured_total="VDD_IN")


def test_energy_result_keys_in_measure_json_order():
    counter = energy_result(12.0, images=4, duration_s=2.0, samples=2)
    assert list(counter.items()) == [
        ("energy_mj", 12.0),
        ("per_image_mj", 3.0),
        ("duration_s", 2.0),
        ("mean_power_mw", 6.0),
        ("rails_mean_mw", None),
        ("total_rail", None),
        ("samples", 2),
    ]
    rails = energy_result(
        12.0,
        images=4,
        duration_s=2.0,
        samples=5,
        total_rail="VDD_IN",
        rails_mean_mw={"VDD_IN": 6.0},
        rails_energy_mj={"VDD_IN": 12.0},
    )
    assert list(rails) == [
        "energy_mj",
        "per_image_mj",
        "duration_s",
        "mean_power_mw",
        "rails_mean_mw",
        "rails_energy_mj",
        "total_rail",
        "samples",
    ]
    assert rails["rails_energy_mj"] == {"VDD_IN": 12.0} and rails["total_rail"] == "VDD_IN"


def test_energy_result_of_an_empty_window_has_no_mean_power():
    assert energy_result(0.0, images=1, duration_s=0.0, samples=2)["mean_power_mw"] is None


def test_unmeasured_energy_is_null_with_its_reason():
    assert list(unmeasured_energy("no sensor").items()) == [
        ("energy_mj", None),
        ("per_image_mj", None),
        ("reason", "no sensor"),
    ]


def test_rapl_wraps_once():
    assert energy_delta_uj(100, 250, 1000) == 150
    assert energy_delta_uj(900, 50, 1000) == 150


def _rapl_tree(root: Path, energy: int, max_range: int = 262143328850) -> Path:
    for domain, name in (
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:0", "core"),
        ("intel-rapl:1", "psys"),
    ):
        d = root / "sys/class/powercap" / domain
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root / "sys/class/powercap/intel-rapl:0/energy_uj"


def test_rapl_meter_reads_package_domains_only_with_wrap(tmp_path):
    counter = _rapl_tree(tmp_path, energy=999_000, max_range=1_000_000)
    meter = RaplMeter(tmp_path)
    assert [d.name for d in meter.domains] == ["intel-rapl:0"]  # not core, not psys
    meter.start()
    counter.write_text("4000\n")  # wrapped: 1000 uJ to the top, then 4000 uJ
    result = meter.stop(images=5)
    assert result["energy_mj"] == 5.0
    assert result["per_image_mj"] == 1.0


def _clock(monkeypatch, step_ns: int) -> None:
    ticks = iter(range(0, 10 * step_ns, step_ns))
    monkeypatch.setattr(meters.time, "perf_counter_ns", lambda: next(ticks))


def test_counter_meter_energy_is_the_counter_difference(monkeypatch):
    _clock(monkeypatch, 500_000_000)
    readings = iter([1000.0, 1003.0])
    meter = CounterMeter(lambda: next(readings), "nvml")
    meter.start()
    result = meter.stop(images=3)
    assert result == {
        "energy_mj": 3.0,
        "per_image_mj": 1.0,
        "duration_s": 0.5,
        "mean_power_mw": 6.0,
        "rails_mean_mw": None,
        "total_rail": None,
        "samples": 2,
    }


def test_rapl_meter_is_a_counter_meter_over_its_packages(tmp_path, monkeypatch):
    counter = _rapl_tree(tmp_path, energy=1_000)
    meter = RaplMeter(tmp_path)
    assert isinstance(meter, CounterMeter) and meter.source == "rapl"
    _clock(monkeypatch, 2_000_000_000)
    meter.start()
    counter.write_text("9000\n")
    result = meter.stop(images=2)
    assert result["energy_mj"] == 8.0 and result["mean_power_mw"] == 4.0
    assert result["rails_mean_mw"] == {"intel-rapl:0": 4.0}
    assert result["total_rail"] == "sum_of_packages"


def test_rapl_absent_gives_reason(tmp_path):
    with pytest.raises(SensorError, match="powercap missing"):
        RaplMeter(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_rapl_permission_denied_gives_reason(tmp_path):
    counter = _rapl_tree(tmp_path, energy=1)
    counter.chmod(0)
    with pytest.raises(SensorError, match="permission denied"):
        RaplMeter(tmp_path)


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ("nano-jp4", {"POM_5V_IN": 3000.0, "POM_5V_GPU": 500.0, "POM_5V_CPU": 1000.0}),
        (
            "xavier-jp4",
            {
                "GPU": 2000.0,
                "CPU": 1000.0,
                "SOC": 1500.0,
                "CV": 0.0,
                "VDDRQ": 250.0,
                "SYS5V": 1750.0,
            },
        ),
        ("orin-nano-jp5", {"VDD_IN": 5000.0, "VDD_CPU_GPU_CV": 1000.0, "VDD_SOC": 1500.0}),
        (
            "agx-orin-jp5",
            {
                "VDD_GPU_SOC": 4000.0,
                "VDD_CPU_CV": 1000.0,
                "VIN_SYS_5V0": 3000.0,
                "VDDQ_VDD2_1V8AO": 500.0,
            },
        ),
    ],
)
def test_rails_discovered_by_name_in_both_layouts(tree, expected):
    rails = discover_rails(FIXTURES / tree)
    assert {r.name: r.read_mw() for r in rails} == expected  # NC and the in7 sum channel skipped


def test_hwmon_update_interval_and_missing_rails(tmp_path):
    assert sensor_update_interval_ms(discover_rails(FIXTURES / "orin-nano-jp5")) == 2
    with pytest.raises(SensorError, match="ina3221x.*ina3221"):
        discover_rails(tmp_path)


def test_jetson_description_from_fixture_tree():
    nano = jetson_description(FIXTURES / "nano-jp4")
    assert nano == {
        "model": "NVIDIA Jetson Nano Developer Kit",
        "l4t_release": "R32.7.1",
        "power_mode": {"name": "MAXN", "id": 0},
        "power_mode_reason": None,
    }
    agx = jetson_description(FIXTURES / "agx-orin-jp5")
    assert agx["power_mode"] == {"name": "MODE_50W", "id": 3}
    assert agx["l4t_release"] == "R35.4.1"
    found = clocks(FIXTURES / "xavier-jp4")
    assert found["cpu_mhz"]["cpu7"] == 2265.6
    assert found["gpu"] == {"device": "17000000.gv11b", "cur_mhz": 1377.0, "max_mhz": 1377.0}


def test_not_a_jetson_and_no_clocks(tmp_path):
    assert jetson_description(tmp_path) is None
    found = clocks(tmp_path)
    assert found["cpu_mhz"] is None and "scaling_cur_freq" in found["cpu_reason"]
    assert found["gpu"] is None and "devfreq" in found["gpu_reason"]


def test_nvpmodel_query_parsing():
    text = "NV Fan Mode:quiet\nNV Power Mode: MODE_15W\n2\n"
    assert parse_nvpmodel_query(text) == {"name": "MODE_15W", "id": 2}
    assert parse_nvpmodel_query("nothing here") is None


def test_tegrastats_jetpack4_and_5_lines():
    nano = (FIXTURES / "tegrastats/nano-jp4.txt").read_text().splitlines()
    assert parse_tegrastats_line(nano[1]) == {
        "POM_5V_IN": {"current_mw": 5020.0, "average_mw": 4003.0},
        "POM_5V_GPU": {"current_mw": 1860.0, "average_mw": 950.0},
        "POM_5V_CPU": {"current_mw": 902.0, "average_mw": 676.0},
    }  # and not RAM 2102/3964MB, SWAP or IRAM
    orin = (FIXTURES / "tegrastats/orin-nano-jp5.txt").read_text()
    assert {k: v["current_mw"] for k, v in parse_tegrastats_line(orin).items()} == {
        "VDD_IN": 4937.0,
        "VDD_CPU_GPU_CV": 596.0,
        "VDD_SOC": 1430.0,
    }
    xavier = parse_tegrastats_line((FIXTURES / "tegrastats/xavier-jp4.txt").read_text())
    assert sorted(xavier) == ["CPU", "CV", "GPU", "SOC", "SYS5V", "VDDRQ"]
    assert len(parse_tegrastats_line((FIXTURES / "tegrastats/agx-orin-jp5.txt").read_text())) == 4
    assert parse_tegrastats_line("RAM 2102/3964MB SWAP 0/1982MB") == {}


def test_trtexec_summary_both_generations():
    trt8 = parse_trtexec_output((FIXTURES / "trtexec/trt8.txt").read_text())
    assert trt8["gpu_compute_ms"]["mean"] == 1.2154
    assert trt8["gpu_compute_ms"]["median"] == 1.2085
    assert trt8["gpu_compute_ms"]["p99"] == 1.3965
    assert trt8["host_latency_ms"]["median"] == 1.2578
    assert trt8["throughput_qps"] == 812.345
    trt7 = parse_trtexec_output((FIXTURES / "trtexec/trt7.txt").read_text())
    assert trt7["gpu_compute_ms"] == {
        "min": 4.01758,
        "max": 4.90234,
        "mean": 4.12289,
        "median": 4.10742,
        "p99": 4.51562,
    }
    assert trt7["host_latency_ms"]["mean"] == 4.23057
    assert trt7["throughput_qps"] == 236.371


def test_settings_validate_and_round_trip():
    settings = MeasureSettings(device="jetson", iters=7, throughput_batch=8)
    assert MeasureSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(DwnasError, match="unknown settings key"):
        MeasureSettings.from_dict({"iterz": 3})
    with pytest.raises(DwnasError, match="iters"):
        MeasureSettings(iters=0)
    with pytest.raises(DwnasError, match="device"):
        MeasureSettings(device="tpu")


def test_nvml_meter_reads_or_says_why():
    from dwnas.measure.nvml import NvmlMeter

    try:
        meter = NvmlMeter()
    except SensorError as exc:  # this machine: no NVIDIA driver, so no NVML library
        assert str(exc).startswith("NVML")
    else:
        meter.start()
        assert meter.stop(images=1)["energy_mj"] >= 0
        meter.close()
