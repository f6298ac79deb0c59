"""Latency tables, budgets, the evolutionary search and the accuracy predictor."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
import yaml

from dwnas.errors import DwnasError
from dwnas.search.accuracy import RidgePredictor, encode, rank_correlation
from dwnas.search.budgets import budget_labels, resolve_budgets
from dwnas.search.evolution import EvolutionarySearch, SearchSettings
from dwnas.search.latency import LatencyTable, profile_space, spatial_sizes
from dwnas.space import Space

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params/smoke.yaml").read_text())


@pytest.fixture(scope="module")
def space() -> Space:
    return Space.from_params(SMOKE["space"])


def macs_cost(module, shape) -> float:
    """A deterministic stand-in for a timer: the module's multiply-accumulates (plus a call cost)."""
    from dwnas.nn.counters import count

    if not any(True for _ in module.parameters()):
        return 0.01
    return 0.01 + count(module, shape[-1], in_channels=shape[0]).macs / 1e6


@pytest.fixture(scope="module")
def table(space) -> LatencyTable:
    return profile_space(space, "host", macs_cost, [32, 40], num_classes=4)


def test_table_covers_every_block_form(space, table):
    keys = table.entries["32"]
    blocks = sum(len(st.kernels) * len(st.expands) * (2 if max(st.depths) > 1 else 1)
                 for st in space.stages)
    assert len(keys) == 2 + 3 * blocks  # stem, head; folded, merged, unmerged per configuration
    assert table.settings["call_overhead_ms"] == pytest.approx(0.01)


def test_prediction_sums_parts_and_interpolates(space, table):
    arch = space.largest().with_resolution(32)
    assert table.predict(arch, "deep") > 0
    mid = arch.with_resolution(36)
    lo, hi = table.predict(arch, "deep"), table.predict(arch.with_resolution(40), "deep")
    assert lo < table.predict(mid, "deep") < hi
    deep_only = arch  # largest is all non-linear: both forms are the same network
    assert table.predict(deep_only, "shallow") == pytest.approx(table.predict(deep_only, "deep"))


def test_linear_blocks_predict_merged_shallow_and_unmerged_deep(space, table):
    from dwnas.space import Arch, BlockArch

    small = space.smallest().with_resolution(32)
    linear = Arch(tuple(tuple(BlockArch(b.kernel, b.expand, True) for b in st) for st in small.stages), 32)
    expected = table.predict(linear, "deep")
    for s, stage in enumerate(linear.stages):
        for b, block in enumerate(stage):
            key = f"s{s}.{'first' if b == 0 else 'rest'}.k{block.kernel}.e{block.expand}"
            expected += table.entries["32"][f"{key}.merged"] - table.entries["32"][f"{key}.unmerged"]
    assert table.predict(linear, "shallow") == pytest.approx(expected)


def test_table_refuses_other_space_device_and_resolution(space, table, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    assert LatencyTable.load(path, space, "host").entries == table.entries
    other = dict(SMOKE["space"], head_channels=48)
    with pytest.raises(DwnasError, match="latency table of another search space"):
        LatencyTable.load(path, Space.from_params(other), "host")
    with pytest.raises(DwnasError, match="made on device 'host', not 'jetson'"):
        LatencyTable.load(path, space, "jetson")
    with pytest.raises(DwnasError, match="outside the latency table's grid"):
        table.predict(space.largest().with_resolution(48))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(DwnasError, match="not a dwnas latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_spatial_sizes_match_the_network(space):
    from dwnas.nn.static import build_static

    arch = space.largest()  # the network does not depend on the arch's resolution; feed 37 px
    net = build_static(space, arch, 4).eval()
    sizes, x = [], torch.zeros(1, 3, 37, 37)
    for layer in net.features[:2]:
        x = layer(x)
    i = 2
    for stage in arch.stages:
        before = x.shape[-1]
        for _ in stage:
            x = net.features[i](x)
            i += 1
        sizes.append((before, x.shape[-1]))
    assert spatial_sizes(space, 37) == sizes


def test_budget_labels_and_resolution():
    assert budget_labels({"unit": "fraction", "values": [0.4, 0.65]}) == ["40pct", "65pct"]
    assert budget_labels({"unit": "ms", "values": [2.5, 10]}) == ["2.5ms", "10ms"]
    assert resolve_budgets({"unit": "fraction", "values": [0.5]}, 8.0) == {"50pct": 4.0}
    with pytest.raises(DwnasError, match="search.budgets.unit"):
        budget_labels({"unit": "s", "values": [1]})


def toy_accuracy(arch) -> float:
    """Bigger is better, linear blocks cost a little: a known landscape for the search."""
    return sum(b.kernel * b.expand - 2 * b.linear for b in arch.blocks) + arch.resolution / 10


def _search(space, table, mode="double-win", seed=0):
    settings = SearchSettings(population=12, generations=6, seed=seed)
    return EvolutionarySearch(space, toy_accuracy, lambda a: table.predict(a, "shallow"),
                              settings, mode)


def test_search_meets_budget_and_is_deterministic(space, table):
    largest = table.predict(space.largest(), "deep")
    budget = 0.7 * largest
    first = _search(space, table).run(budget)
    again = _search(space, table).run(budget)
    assert first.arch == again.arch
    assert table.predict(first.arch, "shallow") <= budget
    assert space.contains(first.arch)
    rng = random.Random(1)
    feasible = [a for a in (space.sample(rng) for _ in range(200))
                if table.predict(a, "shallow") <= budget]
    assert first.accuracy >= sorted(map(toy_accuracy, feasible))[len(feasible) // 2]


def test_deep_only_mode_keeps_every_block_non_linear(space, table):
    result = _search(space, table, mode="deep-only").run(table.predict(space.largest(), "deep"))
    assert result.arch.num_linear == 0


def test_infeasible_budget_is_reported_not_searched(space, table):
    with pytest.raises(DwnasError, match=r"latency budget 1e-06 ms is infeasible .* predicted at"):
        _search(space, table).run(1e-6)


def test_a_budget_only_a_corner_meets_is_searched_from_the_fastest_arch(space, table, capsys):
    """Uniform samples miss it (max_tries 3): the population grows from the fastest arch."""
    search = EvolutionarySearch(space, toy_accuracy, lambda a: table.predict(a, "shallow"),
                                SearchSettings(population=6, generations=2, max_tries=3, seed=0),
                                "double-win")
    budget = 1.02 * table.predict(search.fastest(), "shallow")
    result = search.run(budget)
    assert table.predict(result.arch, "shallow") <= budget
    assert all(table.predict(a, "shallow") <= budget for a in search.final_population)
    assert "seeding the population from the fastest architecture" in capsys.readouterr().out


def test_bad_search_settings():
    with pytest.raises(DwnasError, match="search.population: must be >= 2"):
        SearchSettings(population=1).check()


def test_ridge_predictor_ranks_a_known_landscape(space):
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(80)]
    accs = [toy_accuracy(a) for a in archs]
    predictor = RidgePredictor.fit(space, archs[:60], accs[:60], l2=1e-4)
    held = [predictor.predict(space, a) for a in archs[60:]]
    assert rank_correlation(held, accs[60:]) > 0.8
    assert encode(space, archs[0]).shape == encode(space, archs[1]).shape


def test_calibration_recovers_a_whole_network_slowdown(space):
    """Whole networks cost 1.3x their parts (as caches make them on a real device): the one
    fitted scale finds 1.3 and fidelity on other archs becomes exact."""
    from dwnas.nn.static import StaticNet
    from dwnas.search.latency import calibrate, fidelity

    def timer(module, shape):
        cost = macs_cost(module, shape)
        return 1.3 * cost if isinstance(module, StaticNet) else cost

    table = profile_space(space, "host", timer, [32, 40], num_classes=4)
    raw = fidelity(table, space, timer, 4, n_archs=3, seed=0)
    assert raw["summary"]["all"]["mape"] > 0.15
    scales = calibrate(table, space, timer, 4, n_archs=3, seed=0)
    assert scales["scale"] == pytest.approx(1.3, rel=0.02)
    fitted = fidelity(table, space, timer, 4, n_archs=3, seed=0)
    assert fitted["summary"]["all"]["within_10pct"] == 1.0
    assert fitted["calibration"] == scales


def test_identical_graphs_predict_the_same_latency_after_calibration(space):
    """Issue 11: one scale for every form. A deep-only arch is one graph in both forms, and a
    Double-Win arch without linear blocks is the same graph as its deep-only twin."""
    from dwnas.nn.deploy import MergedConv
    from dwnas.nn.static import StaticNet
    from dwnas.search.evolution import deep_only
    from dwnas.search.latency import calibrate

    def timer(module, shape):  # whole networks with merged convs run relatively slower here
        cost = macs_cost(module, shape)
        if isinstance(module, StaticNet):
            merged = any(isinstance(m, MergedConv) for m in module.modules())
            return cost * (1.6 if merged else 1.1)
        return cost

    table = profile_space(space, "host", timer, [32, 40], num_classes=4)
    calibrate(table, space, timer, 4, n_archs=4, seed=0)
    assert table.scale > 1.0
    rng = random.Random(3)
    for _ in range(20):
        arch = deep_only(space.sample(rng))
        assert table.predict(arch, "deep") == table.predict(arch, "shallow")


def test_pipeline_fidelity_reports_raw_and_drift_corrected_errors(space, table, tmp_path):
    """A measurement taken when the machine ran 20% slower than at profiling: the raw error is
    the table's and the machine's together, the canary's drift takes the machine's part out."""
    import json
    import random

    from dwnas.report.fidelity import pipeline_fidelity

    arch = space.sample(random.Random(0)).with_resolution(32)
    folder = tmp_path / "transform" / "double-win" / "60pct"
    folder.mkdir(parents=True)
    (folder / "transform.json").write_text(json.dumps(
        {"arch": arch.to_dict(), "space_fingerprint": table.space_fingerprint}))
    measured = {form: 1.2 * table.predict(arch, form) for form in ("deep", "shallow")}
    compare = {"forms": {form: {"graph_digest": form, "latency_ms": ms}
                         for form, ms in measured.items()},
               "canary": {"drift": 1.2}}
    path = tmp_path / "measure" / "double-win" / "60pct" / "host" / "torch.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(compare))
    result = pipeline_fidelity([path], {("host", "torch"): table}, space)
    summary = result["summary"]["torch"]
    assert summary["n"] == 2 and summary["within_10pct"] == 0.0
    assert summary["mape"] == pytest.approx(1 / 6)  # predicted = measured / 1.2
    assert summary["drift_corrected"]["within_10pct"] == 1.0
    assert summary["drift_corrected"]["mape"] == pytest.approx(0.0, abs=1e-12)
    del compare["canary"]
    path.write_text(json.dumps(compare))
    assert pipeline_fidelity([path], {("host", "torch"): table}, space)["summary"]["torch"][
        "drift_corrected"] is None


def test_profile_writes_the_canary_it_timed(tmp_path):
    """The drift reference travels with the table: its file beside lut.json, its latency by the
    compare estimator in the table's settings."""
    import json

    from dwnas.cli import main
    from dwnas.measure.compare import read_canary

    out = tmp_path / "profile"
    assert main(["profile", "--space", json.dumps(SMOKE["space"]), "--grid", "32,40",
                 "--num-classes", "4", "--settings", json.dumps({"warmup": 1, "iters": 2, "threads": 1}),
                 "--calibration-archs", "0", "--fidelity-archs", "0", "--rounds", "2",
                 "--round-iters", "2", "--runtime", "onnxruntime", "--out", str(out)]) == 0
    canary = read_canary(out / "lut.json")
    assert canary["file"] == out / "canary.onnx" and canary["latency_ms"] > 0
    assert canary["resolution"] in (32, 36, 40)
    assert json.loads((out / "summary.json").read_text())["canary"]["file"] == "canary.onnx"


def test_budgets_are_checked_against_each_modes_fastest_network(space, table):
    from dwnas.search.budgets import check_feasible
    from dwnas.search.evolution import fastest_candidates

    floors = {mode: min(table.predict(a, "shallow" if mode == "double-win" else "deep")
                        for a in fastest_candidates(space, mode))
              for mode in ("double-win", "deep-only")}
    assert floors["double-win"] < floors["deep-only"]  # all-linear merges: the smoke space's
    between = (floors["double-win"] + floors["deep-only"]) / 2
    ok = check_feasible(table, space, {"unit": "ms", "values": [floors["deep-only"] * 1.01]},
                        ["double-win", "deep-only"])
    assert ok == {f"{floors['deep-only'] * 1.01:g}ms": floors["deep-only"] * 1.01}
    assert check_feasible(table, space, {"unit": "ms", "values": [between]}, ["double-win"])
    with pytest.raises(DwnasError, match=r"^search\.budgets: .* is infeasible in deep-only mode: "
                       r"the fastest network of the space is predicted at"):
        check_feasible(table, space, {"unit": "ms", "values": [between]},
                       ["double-win", "deep-only"])


def test_profile_stops_on_an_infeasible_budget_before_writing(tmp_path):
    """The pipeline's profile rule passes search.budgets: an infeasible one is an error line from
    the profile stage (which runs first), not from the search after training."""
    import json
    import subprocess
    import sys

    out = tmp_path / "lut"
    done = subprocess.run(
        [sys.executable, "-m", "dwnas", "profile", "--space", json.dumps(SMOKE["space"]),
         "--grid", "32,40", "--num-classes", "4", "--settings", '{"warmup": 1, "iters": 5}',
         "--calibration-archs", "0", "--fidelity-archs", "0", "--rounds", "1", "--round-iters",
         "1", "--budgets", '{"unit": "ms", "values": [1e-9]}', "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "DWNAS_TRACKING": "0"}, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: search.budgets: 1e-09ms (")
    assert "is infeasible in double-win mode" in done.stderr
    assert not out.exists()
