"""``dwnas compare``: networks timed side by side, identical graphs exactly 1, intervals that hold."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dwnas.cli import main
from dwnas.measure.compare import bootstrap_ratio, graph_digest
from dwnas.transform.export import export_onnx, export_program


def small(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU6(), nn.Conv2d(width, width, 3, 1, 1),
                         nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, net in (("a", small(8)), ("a_again", small(8)), ("wide", small(64)),
                      ("other_weights", small(8, seed=1))):
        export_onnx(net, root / f"{name}.onnx", 24)
        export_program(net, root / f"{name}.pt2", 24)
    return root


@pytest.mark.parametrize("suffix", ["onnx", "pt2"])
def test_graph_digest_names_what_a_file_computes(files, suffix):
    """Two exports of one network are one graph (torch.export archives differ byte-wise); other
    weights or another shape are not."""
    a = graph_digest(files / f"a.{suffix}")
    assert a == graph_digest(files / f"a_again.{suffix}")
    assert a != graph_digest(files / f"other_weights.{suffix}")
    assert a != graph_digest(files / f"wide.{suffix}")


def test_identical_graphs_are_one_network_with_speedup_exactly_one(files, tmp_path):
    out = tmp_path / "cmp.json"
    assert main(["compare", "--model", f"deep={files}/a.onnx", f"shallow={files}/a_again.onnx",
                 f"deep-only={files}/wide.onnx", "--resolution", "24", "--warmup", "1",
                 "--iters", "3", "--rounds", "6", "--round-iters", "3", "--threads", "1",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ratios"]["speedup"] == {"ratio": 1.0, "ci95": [1.0, 1.0], "rounds": 6,
                                           "identical": True}
    forms = result["forms"]
    assert forms["shallow"]["same_graph_as"] == "deep"
    assert forms["shallow"]["rounds_ms"] == forms["deep"]["rounds_ms"]  # timed once
    assert len(forms["deep-only"]["rounds_ms"]) == 6
    vs = result["ratios"]["speedup_vs_deep_only"]
    assert not vs["identical"] and vs["ci95"][0] <= vs["ratio"] <= vs["ci95"][1]
    assert vs["ratio"] > 1.0  # the 8x wider network is slower than the narrow one


def test_bootstrap_interval_holds_the_ratio_and_narrows_with_rounds():
    import random

    rng = random.Random(0)
    deep = [2.0 + rng.gauss(0, 0.1) for _ in range(40)]
    shallow = [1.0 + rng.gauss(0, 0.05) for _ in range(40)]
    wide = bootstrap_ratio(deep[:8], shallow[:8])
    narrow = bootstrap_ratio(deep, shallow)
    for result in (wide, narrow):
        assert result["ci95"][0] <= result["ratio"] <= result["ci95"][1]
    assert narrow["ci95"][1] - narrow["ci95"][0] < wide["ci95"][1] - wide["ci95"][0]
    assert narrow["ci95"][0] > 1.8 and narrow["ci95"][1] < 2.2


def test_bad_labels_and_missing_files_exit_2(files, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", "--model", f"fast={files}/a.onnx", "--resolution", "24",
                 "--out", str(out)]) == 2
    assert "use LABEL=PATH with LABEL deep, shallow or deep-only" in capsys.readouterr().err
    assert main(["compare", "--model", f"deep={files}/missing.onnx", f"shallow={files}/a.onnx",
                 "--resolution", "24", "--out", str(out)]) == 2
    assert "missing.onnx: model file not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(bytes(range(256)) * 2)
    assert main(["compare", "--model", f"deep={corrupt}", f"shallow={files}/a.onnx",
                 "--resolution", "24", "--out", str(out)]) == 2
    assert "corrupt.onnx: cannot load as onnx" in capsys.readouterr().err
    assert not out.exists()


def test_each_network_runs_at_its_own_resolution(files, tmp_path):
    """Deep-only's network at a budget can take another input size than Double-Win's (a
    torch.export program is specialised to its own)."""
    export_program(small(8, seed=2), tmp_path / "other_size.pt2", 32)
    out = tmp_path / "cmp.json"
    assert main(["compare", "--model", f"deep={files}/a.pt2", f"shallow={files}/a_again.pt2",
                 f"deep-only={tmp_path}/other_size.pt2@32", "--resolution", "24", "--warmup", "1",
                 "--iters", "3", "--rounds", "3", "--round-iters", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    forms = json.loads(out.read_text())["forms"]
    assert (forms["deep"]["resolution"], forms["deep-only"]["resolution"]) == (24, 32)
    assert forms["deep-only"]["measure"]["input_shape"] == [1, 3, 32, 32]


def test_the_canary_joins_the_rounds_and_gives_the_drift(files, tmp_path):
    """The latency table's reference network is timed inside the rounds; drift = its latency now
    over its latency at profiling, and it is not one of the compared forms."""
    lut = tmp_path / "lut.json"
    (tmp_path / "canary.onnx").write_bytes((files / "wide.onnx").read_bytes())
    lut.write_text(json.dumps({"settings": {"canary": {"file": "canary.onnx", "resolution": 24,
                                                       "latency_ms": 0.5}}}))
    out = tmp_path / "cmp.json"
    assert main(["compare", "--model", f"deep={files}/a.onnx", f"shallow={files}/a_again.onnx",
                 "--resolution", "24", "--warmup", "1", "--iters", "3", "--rounds", "4",
                 "--round-iters", "3", "--threads", "1", "--canary", str(lut),
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    canary = result["canary"]
    assert set(result["forms"]) == {"deep", "shallow"}
    assert len(canary["rounds_ms"]) == 4 and canary["profiled_ms"] == 0.5
    assert canary["drift"] == pytest.approx(canary["measured_ms"] / 0.5)
    assert canary["measured_ms"] > result["forms"]["deep"]["latency_ms"]  # 8x wider: slower


def test_a_table_without_its_canary_is_an_error_line(files, tmp_path, capsys):
    lut = tmp_path / "lut.json"
    lut.write_text(json.dumps({"settings": {"canary": {"file": "gone.onnx", "resolution": 24,
                                                       "latency_ms": 0.5}}}))
    assert main(["compare", "--model", f"deep={files}/a.onnx", f"shallow={files}/a.onnx",
                 "--resolution", "24", "--canary", str(lut), "--out", str(tmp_path / "c.json")]) == 2
    assert f"{tmp_path / 'gone.onnx'}: the latency table's canary file is missing" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
