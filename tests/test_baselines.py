"""The compared methods at smoke scale: each command's outputs meet the shared contracts (deploy
forms verified and loadable, transform.json, summary, the report's MLflow row), the report joins
their measurements, and the workflow plans every baseline. One module-scoped run of every method
(tracking to its own MLflow store) feeds most checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dwnas.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
BASE = SMOKE["baselines"]
EVAL = ["--calib-images", "16", "--eval-batch", "32"]
EXPERIMENT = "dwnas-baselines-test"


def ok(args: list[str]) -> None:
    assert main(args) == 0, args


def measure(folder: Path, resolution: int, out: Path, method: str, variant: str,
            runtime: str) -> None:
    """The pipeline's measure rule: deep and shallow side by side (``dwnas compare``)."""
    suffix = {"torch": "pt2", "onnxruntime": "onnx"}[runtime]
    ok(["--tag", f"method={method}", "--tag", f"budget={variant}", "--tag", "device=host",
        "--tag", f"runtime={runtime}", "compare", "--model", f"deep={folder}/deep.{suffix}",
        f"shallow={folder}/shallow.{suffix}", "--resolution", str(resolution), "--device", "host",
        "--warmup", "1", "--iters", "5", "--rounds", "4", "--round-iters", "2", "--threads", "1",
        "--out", str(out)])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Every baseline at smoke scale, then each deploy form measured, tracked to one store."""
    root = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DWNAS_TRACKING", "1")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("DWNAS_EXPERIMENT", EXPERIMENT)
        mp.delenv("DWNAS_PARENT_RUN_ID", raising=False)
        ok(["data", "synth", "--out", str(root / "raw"), "--classes", "4", "--train-per-class",
            "16", "--val-per-class", "8", "--image-size", "40", "--seed", "0"])
        prepared = str(root / "prepared")
        ok(["data", "prepare", "--root", str(root / "raw"), "--subset", "all", "--out", prepared,
            "--on-corrupt", "fail"])
        common = ["--prepared", prepared, *EVAL]
        out = root / "baselines"

        ok(["baseline", "mobilenetv2", *common, "--width", "0.35", "--resolution", "32",
            "--recipe", json.dumps(BASE["mobilenetv2"]["recipe"]),
            "--out", str(out / "mobilenetv2/w0.35_r32")])

        from dwnas.nn.checkpoint import save_supernet
        from dwnas.nn.supernet import Supernet
        from dwnas.search.evolution import deep_only
        from dwnas.space import Space

        space = Space.from_params(SMOKE["space"])
        torch.manual_seed(0)
        save_supernet(root / "elastic.pt", Supernet(space, 4))
        (root / "deep.json").write_text(deep_only(space.largest()).to_json())
        ok(["baseline", "depthshrinker", *common, "--checkpoint", str(root / "elastic.pt"),
            "--arch", str(root / "deep.json"), "--budget", "75pct", "--linear-fraction", "0.5",
            "--recipe", json.dumps(BASE["depthshrinker"]["recipe"]),
            "--out", str(out / "depthshrinker/75pct")])

        hurricane = BASE["hurricane"]
        # smoke's own timing settings: fewer iterations once made 75% infeasible by noise alone
        timing = json.dumps({k: SMOKE["profile"][k] for k in ("warmup", "iters", "threads")})
        ok(["profile", "--space", json.dumps(SMOKE["space"]), "--grid", "32,40", "--num-classes",
            "4", "--settings", timing, "--fidelity-archs", "0", "--statistic", "min",
            "--runtime", "onnxruntime", "--out", str(root / "profile")])
        ok(["baseline", "hurricane", "supernet", *common, "--space", json.dumps(SMOKE["space"]),
            "--settings", json.dumps(hurricane), "--measure-settings",
            json.dumps({**json.loads(timing), "statistic": "min", "runtime": "onnxruntime"}),
            "--out", str(out / "hurricane/supernet")])
        ratios = {k: SMOKE["search"][k] for k in ("parent_ratio", "mutation_ratio", "mutate_prob",
                                                   "mutate_resolution_prob", "max_tries")}
        ok(["baseline", "hurricane", "search", *common, "--supernet",
            str(out / "hurricane/supernet/supernet.pt"), "--lut", str(root / "profile/lut.json"),
            "--budgets", json.dumps(SMOKE["search"]["budgets"]), "--budget", "75pct",
            "--settings", json.dumps(hurricane), "--search-settings", json.dumps(ratios),
            "--out", str(out / "hurricane/75pct")])

        odn = BASE["odn"]
        criterion = {k: odn[k] for k in ("target_top1", "min_delta", "max_rounds_per_depth",
                                         "max_epochs")}
        for backbone in ("resnet18", "mbconv"):
            ok(["baseline", "odn", *common, "--backbone", backbone, "--space",
                json.dumps(SMOKE["space"]), "--resnet-width", str(odn["resnet_width"]),
                "--resolution", str(odn["resolution"]), "--criterion", json.dumps(criterion),
                "--recipe", json.dumps(odn["recipe"]), "--out", str(out / f"odn/{backbone}")])

        for method, variant in VARIANTS:
            folder = out / method / variant
            resolution = json.loads((folder / "transform.json").read_text())["resolution"]
            for runtime in ("torch", "onnxruntime"):
                measure(folder, resolution, root / f"measure/{method}/{variant}/host/{runtime}.json",
                        method, variant, runtime)
    return root


VARIANTS = [("mobilenetv2", "w0.35_r32"), ("depthshrinker", "75pct"), ("hurricane", "75pct"),
            ("odn", "resnet18"), ("odn", "mbconv")]


@pytest.mark.parametrize(("method", "variant"), VARIANTS)
def test_outputs_meet_the_shared_contract(run, method, variant):
    folder = run / "baselines" / method / variant
    described = folder / ("arch.json" if method in ("mobilenetv2", "depthshrinker") else "config.json")
    for name in ("weights.pt", "deep.pt2", "shallow.pt2", "deep.onnx", "shallow.onnx",
                 "transform.json", "summary.json"):
        assert (folder / name).is_file(), name
    assert described.is_file()
    assert not list(folder.parent.glob(".*")), "no temporary or work folder left behind"
    transform = json.loads((folder / "transform.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert transform["max_rel_err"] <= 1e-5
    assert summary["method"] == method and summary["variant"] == variant
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0
    for key in ("macs_deep", "macs_shallow", "params_deep", "layers_deep", "layers_shallow"):
        assert summary[key] == transform[key] > 0
    # the exported files are the evaluated network: same top-1 as the reported one
    assert summary["top1"] == transform["top1"]["evaluated"]
    for name in ("deep.pt2", "shallow.pt2", "deep.onnx", "shallow.onnx"):
        assert abs(transform["top1"][name] - summary["top1"]) <= 0.002, (name, transform["top1"])
    resolution = transform["resolution"]
    x = torch.randn(2, 3, resolution, resolution)
    deep = torch.export.load(str(folder / "deep.pt2")).module()
    shallow = torch.export.load(str(folder / "shallow.pt2")).module()
    with torch.no_grad():
        scale = deep(x).abs().max()
        assert (deep(x) - shallow(x)).abs().max() <= 1e-4 * scale
    measured = json.loads((run / f"measure/{method}/{variant}/host/onnxruntime.json").read_text())
    assert measured["forms"]["shallow"]["latency_ms"] > 0
    if not transform["merged"]:  # nothing to merge: one graph, speed-up 1 by construction
        assert measured["ratios"]["speedup"] == {"ratio": 1.0, "ci95": [1.0, 1.0], "rounds": 4,
                                                 "identical": True}


def test_mobilenetv2_equals_torchvision(run):
    from dwnas.baselines.mobilenetv2 import space_section, torchvision_check
    from dwnas.nn.static import build_static
    from dwnas.space import Space

    summary = json.loads((run / "baselines/mobilenetv2/w0.35_r32/summary.json").read_text())
    check = summary["torchvision"]
    assert check["params"] == check["torchvision_params"] and check["macs"] == check["torchvision_macs"]
    space = Space.from_params(space_section(1.0, 224))
    full = torchvision_check(build_static(space, space.largest(), 1000), 1.0, 224, 1000)
    assert (full["params"], full["macs"], full["depth"]) == (3504872, 300774272, 53)
    # its weights are a supernet checkpoint of a one-architecture space: `dwnas transform` reads it
    ok(["transform", "--arch", str(run / "baselines/mobilenetv2/w0.35_r32/arch.json"),
        "--checkpoint", str(run / "baselines/mobilenetv2/w0.35_r32/weights.pt"),
        "--prepared", str(run / "prepared"), *EVAL, "--out", str(run / "mnv2_transform")])


def test_depthshrinker_linearises_the_cheapest_blocks_and_merges_them(run):
    from dwnas.space import Arch

    folder = run / "baselines/depthshrinker/75pct"
    summary = json.loads((folder / "summary.json").read_text())
    arch = Arch.load(folder / "arch.json")
    blocks = summary["blocks"]
    assert summary["num_linear"] == arch.num_linear == round(0.5 * blocks)
    cheapest = sorted(r["block"] for r in summary["ranking"][:summary["num_linear"]])
    assert summary["linear_blocks"] == cheapest
    drops = [r["drop"] for r in summary["ranking"]]
    assert drops == sorted(drops)
    linear_flags = [b.linear for b in arch.blocks]
    assert [i for i, flag in enumerate(linear_flags) if flag] == cheapest
    # each merged block is one convolution instead of two or three
    assert summary["layers_shallow"] < summary["layers_deep"]


def test_rank_blocks_orders_by_accuracy_lost():
    from dwnas.baselines.depthshrinker import count_to_linearise, rank_blocks, with_linear
    from dwnas.space import Space

    space = Space.from_params(SMOKE["space"])
    deep = space.largest()
    cost = {0: 0.3, 1: 0.0, 2: 0.1, 3: 0.0}

    def accuracy(arch):
        return 0.9 - sum(cost[i] for i, b in enumerate(arch.blocks) if b.linear)

    ranking = rank_blocks(deep, accuracy)
    assert [r["block"] for r in ranking] == [1, 3, 2, 0]
    assert ranking[-1]["drop"] == pytest.approx(0.3)
    assert with_linear(deep, {1, 3}).num_linear == 2
    assert count_to_linearise(4, 0.5) == 2 and count_to_linearise(5, 0.0) == 0


def test_latency_table_records_its_statistic(run):
    table = json.loads((run / "profile/lut.json").read_text())
    assert table["settings"]["statistic"] == "min" and table["runtime"] == "onnxruntime"


def test_hurricane_preselects_operators_and_fits_the_budget(run):
    from dwnas.baselines.hurricane import SKIP, OpSupernet, layers_of, preselect

    sup = json.loads((run / "baselines/hurricane/supernet/ops.json").read_text())
    table, choices = sup["table"], sup["choices"]
    hurricane = BASE["hurricane"]
    candidates = (len(hurricane["kinds"]) * len(hurricane["kernels"]) * len(hurricane["expands"])
                  * len(hurricane["se"]))
    net, _ = OpSupernet.load(run / "baselines/hurricane/supernet/supernet.pt")
    for layer, allowed in zip(layers_of(net.space), choices, strict=True):
        entries = table["positions"][layer.position]
        assert len(entries) == candidates
        ops = [c for c in allowed if c != SKIP]
        assert ops == preselect(entries, hurricane["keep_ops"])
        assert len(ops) <= hurricane["keep_ops"] + 1
        assert min(entries, key=lambda n: entries[n]["ms"]) in ops
        assert (SKIP in allowed) == (not layer.first)
    summary = json.loads((run / "baselines/hurricane/75pct/summary.json").read_text())
    assert summary["latency_predicted_ms"] <= summary["budget_ms"]
    assert all(op in allowed for op, allowed in zip(summary["path"], choices, strict=True))


def test_preselect_keeps_the_operators_fast_on_the_device():
    """Issue 12: the paper keeps what is fast on the target device, not what does the most work
    per millisecond (that kept the heaviest fused blocks)."""
    from dwnas.baselines.hurricane import preselect

    entries = {"a": {"ms": 1.0, "macs": 100}, "b": {"ms": 2.0, "macs": 600},
               "c": {"ms": 0.5, "macs": 10}, "d": {"ms": 4.0, "macs": 1000}}
    assert preselect(entries, 2) == ["c", "a"]
    assert preselect(entries, 4) == ["c", "a", "b", "d"]


def test_hurricane_operators_fold_exactly():
    from dwnas.baselines.hurricane import Op, OpBlock
    from dwnas.transform.deploy import fold_bn
    from dwnas.transform.verification import randomize_bn_

    x = torch.randn(2, 8, 9, 9)
    for op in (Op("mbconv", 5, 3, True), Op("fused", 3, 1, False), Op("mbconv", 3, 1, False)):
        block = randomize_bn_(OpBlock(8, 8, 1, op), seed=1).eval()
        folded = fold_bn(block)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        with torch.no_grad():
            ref = block(x)
            assert (folded(x) - ref).abs().max() <= 1e-5 * ref.abs().max(), op


def test_odn_reports_depth_memory_and_follows_its_criterion(run):
    odn = BASE["odn"]
    for backbone, full_depth in (("resnet18", 8), ("mbconv", 4)):
        summary = json.loads((run / f"baselines/odn/{backbone}/summary.json").read_text())
        assert summary["full_depth"] == full_depth
        assert 1 <= summary["depth_found"] <= full_depth
        assert summary["memory_saved"] == pytest.approx(
            1 - summary["memory_bytes_found"] / summary["memory_bytes_full"])
        assert summary["memory_bytes_found"] == 4 * summary["params_deep"]
        rounds = summary["rounds"]
        assert len(rounds) * odn["recipe"]["epochs"] == summary["epochs"] <= odn["max_epochs"]
        # max_rounds_per_depth 1: every round but the last grows the network by one block
        assert [r["depth"] for r in rounds] == list(range(1, len(rounds) + 1))
        assert rounds[-1]["decision"].startswith("stop:")
        assert summary["depth_found"] == rounds[-1]["depth"]


def test_odn_criterion():
    from dwnas.baselines.odn import Criterion

    c = Criterion(target_top1=0.8, min_delta=0.01, max_rounds_per_depth=3, max_epochs=10)
    assert c.decide(0.85, 0.2, 1, 2, False) == "stop:target reached"
    assert c.decide(0.5, 0.005, 1, 2, False) == "grow"
    assert c.decide(0.5, 0.05, 1, 2, False) == "train"
    assert c.decide(0.5, 0.05, 3, 2, False) == "grow"
    assert c.decide(0.5, 0.005, 1, 2, True) == "stop:full depth converged below the target"
    assert c.decide(0.5, 0.05, 1, 10, False) == "stop:epoch budget spent"


def test_odn_growth_keeps_the_function_and_resnet18_equals_torchvision():
    from torchvision.models import resnet18

    from dwnas.baselines import odn
    from dwnas.nn.counters import count
    from dwnas.space import Space

    full = odn.build(odn.backbone("resnet18", resnet_width=64), 8, 1000)
    assert count(full, 224) == count(resnet18(), 224)
    for bb in (odn.backbone("resnet18", resnet_width=8),
               odn.backbone("mbconv", Space.from_params(SMOKE["space"]))):
        torch.manual_seed(0)
        net = odn.build(bb, 1, 4).eval()
        x = torch.randn(2, 3, 40, 40)
        grown = odn.grow(bb, net, 4).eval()
        assert odn.depth_of(bb, grown) == 2
        if bb.block_out(2) == bb.block_out(1):  # same width: identity block, same head
            assert torch.equal(grown(x), net(x))


def test_odn_growth_without_a_shortcut_keeps_the_network_alive():
    """Issue 12: a grown MBConv block that changes width or stride has no shortcut; zeroing its
    last BN made the output independent of the input (ODN-MBConv stuck at chance)."""
    from dwnas.baselines import odn
    from dwnas.space import Space

    bb = odn.backbone("mbconv", Space.from_params(SMOKE["space"]))
    torch.manual_seed(0)
    net = odn.build(bb, 0, 4).eval()
    for depth in range(bb.full_depth):
        net = odn.grow(bb, net, 4).eval()
        new_block = net.features[odn._stem_len(bb) + depth]
        x1, x2 = torch.randn(2, 3, 40, 40), torch.randn(2, 3, 40, 40)
        with torch.no_grad():
            assert not torch.allclose(net(x1), net(x2)), f"depth {depth + 1}: output is constant"
        assert bool(new_block.project_bn.weight.abs().sum() > 0) != new_block.shortcut


def test_report_rows_and_pareto_hold_every_method(run):
    from dwnas.report.figures import deep_vs_shallow, pareto
    from dwnas.report.tables import main_table, write_tables

    table = main_table(sorted((run / "measure").rglob("*.json")))
    got = {(r.method, r.budget, r.runtime) for r in table.itertuples()}
    assert got == {(m, v, rt) for m, v in VARIANTS for rt in ("torch", "onnxruntime")}
    assert table["top1"].between(0, 1).all()
    assert (table["top1_ci_low"] <= table["top1"]).all() and (table["top1"] <= table["top1_ci_high"]).all()
    assert table["latency_deep_ms"].gt(0).all() and table["latency_shallow_ms"].gt(0).all()
    assert table["max_rel_err"].le(1e-5).all()
    assert set(table["device"]) == {"host"}
    assert (table["speedup_ci_low"] <= table["speedup"]).all()
    assert (table["speedup"] <= table["speedup_ci_high"]).all()
    odn = table[table["method"] == "odn"]
    assert odn["memory_saved"].between(0, 1).all() and odn["depth_found"].ge(1).all()
    assert table[table["method"] != "odn"]["memory_saved"].isna().all()
    markdown = write_tables(table, run / "tables")[1].read_text()
    assert "Memory saved (%)" in markdown and "Depth found / full" in markdown
    assert "Speed-up [95% CI]" in markdown and "Params shallow (M)" in markdown
    summary = json.loads((run / "baselines/odn/mbconv/summary.json").read_text())
    assert f"{summary['depth_found']} / {summary['full_depth']}" in markdown
    files = pareto(table, run / "figures") + deep_vs_shallow(table, run / "figures")
    assert all(p.stat().st_size > 0 for p in files)


def test_every_row_states_its_training_budget_in_images_seen(run):
    """Issue 12: one budget unit for every method, over the final network's whole lineage."""
    from dwnas.report.tables import main_table

    table = main_table(sorted((run / "measure").rglob("*.json")))
    assert table["images_seen"].gt(0).all()
    train_images = 4 * 16

    def full_batches(recipe: dict) -> int:
        return recipe["epochs"] * (train_images // recipe["batch_size"]) * recipe["batch_size"]

    def seen(folder: str) -> int:
        return json.loads((run / "baselines" / folder / "summary.json").read_text())["images_seen"]

    assert seen("mobilenetv2/w0.35_r32") == full_batches(BASE["mobilenetv2"]["recipe"])
    # the untrained elastic.pt records no lineage: the fine-tuning alone
    assert seen("depthshrinker/75pct") == full_batches(BASE["depthshrinker"]["recipe"])
    odn = json.loads((run / "baselines/odn/mbconv/summary.json").read_text())
    assert odn["images_seen"] == len(odn["rounds"]) * full_batches(BASE["odn"]["recipe"])


def test_report_latency_is_the_interleaved_rounds_median(run):
    import statistics

    from dwnas.report.tables import main_table

    path = run / "measure/odn/resnet18/host/onnxruntime.json"
    compare = json.loads(path.read_text())
    row = main_table([path]).iloc[0]
    assert row["latency_shallow_ms"] == pytest.approx(
        statistics.median(compare["forms"]["shallow"]["rounds_ms"]))
    assert compare["statistic"] == "min"


def test_bad_input_is_refused_with_the_key_named(tmp_path, capsys):
    recipe = dict(BASE["mobilenetv2"]["recipe"], subnets_per_step=2)
    assert main(["baseline", "mobilenetv2", "--prepared", str(tmp_path), "--width", "0.5",
                 "--resolution", "32", "--recipe", json.dumps(recipe),
                 "--out", str(tmp_path / "o")]) == 2
    assert "baselines.mobilenetv2.recipe.subnets_per_step" in capsys.readouterr().err
    recipe = dict(BASE["odn"]["recipe"], nproc=2)
    assert main(["baseline", "odn", "--prepared", str(tmp_path), "--backbone", "resnet18",
                 "--resolution", "32", "--criterion", json.dumps(
                     {"target_top1": 0.5, "min_delta": 0, "max_rounds_per_depth": 1,
                      "max_epochs": 1}),
                 "--recipe", json.dumps(recipe), "--out", str(tmp_path / "o")]) == 2
    assert "baselines.odn.recipe.nproc" in capsys.readouterr().err
    settings = dict(BASE["hurricane"], late_stages=5)
    assert main(["baseline", "hurricane", "supernet", "--prepared", str(tmp_path), "--space",
                 json.dumps(SMOKE["space"]), "--settings", json.dumps(settings),
                 "--out", str(tmp_path / "o")]) == 2
    assert "hurricane.late_stages" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_workflow_plans_every_baseline_before_the_report(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d",
         str(tmp_path), "-n", "--cores", "2", "--configfile", str(REPO / "params/smoke.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = done.stdout
    jobs = {}
    for line in plan.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    budgets = len(SMOKE["search"]["budgets"]["values"])
    assert jobs["baseline_mobilenetv2"] == len(BASE["mobilenetv2"]["widths"]) * len(
        BASE["mobilenetv2"]["resolutions"])
    assert jobs["baseline_depthshrinker"] == jobs["baseline_hurricane"] == budgets
    assert jobs["baseline_hurricane_supernet"] == 1
    assert jobs["baseline_odn"] == len(BASE["odn"]["backbones"])
    baseline_rows = jobs["baseline_mobilenetv2"] + 2 * budgets + jobs["baseline_odn"]
    runtimes = len(SMOKE["measure"]["runtimes"])
    assert jobs["measure"] == runtimes * (2 * budgets + baseline_rows)  # a row per runtime
    assert jobs["profile"] == runtimes
    report = plan[plan.index("rule report:"):]
    assert "results/smoke/measure/odn/mbconv/host/onnxruntime.json" in report.split("output:")[0]


def test_depthshrinker_fine_tuning_does_not_lose_accuracy(prepared, tmp_path):
    """Issue 12: with the default params' recipe, fine-tuning the shrunk network keeps at least
    the top-1 it had abruptly linearised (distilling from the deep form lost 8-10 points)."""
    from training_args import supernet_args

    from dwnas.search.evolution import deep_only
    from dwnas.space import Space

    assert main(supernet_args(prepared, tmp_path, epochs=4)) == 0
    space = Space.from_params(SMOKE["space"])
    (tmp_path / "deep.json").write_text(deep_only(space.largest()).with_resolution(32).to_json())
    default = yaml.safe_load((REPO / "params/default.yaml").read_text())
    recipe = dict(default["baselines"]["depthshrinker"]["recipe"], batch_size=16, epochs=2)
    ok(["baseline", "depthshrinker", "--prepared", str(prepared), "--calib-images", "48",
        "--eval-batch", "32", "--checkpoint", str(tmp_path / "supernet.pt"),
        "--arch", str(tmp_path / "deep.json"), "--budget", "75pct", "--linear-fraction", "0.5",
        "--recipe", json.dumps(recipe), "--runtimes", "onnxruntime", "--out", str(tmp_path / "ds")])
    summary = json.loads((tmp_path / "ds/summary.json").read_text())
    assert summary["top1"] >= summary["top1_before_finetune"]
    assert set(summary["finetune_train_top1"]) == {"before", "after"}
    # a fine-tuning that wrecks the network is not kept: the result is the linearised network
    wreck = dict(recipe, lr=5.0, weight_decay=0.0, grad_clip=None)
    ok(["baseline", "depthshrinker", "--prepared", str(prepared), "--calib-images", "48",
        "--eval-batch", "32", "--checkpoint", str(tmp_path / "supernet.pt"),
        "--arch", str(tmp_path / "deep.json"), "--budget", "75pct", "--linear-fraction", "0.5",
        "--recipe", json.dumps(wreck), "--runtimes", "onnxruntime", "--out", str(tmp_path / "w")])
    wrecked = json.loads((tmp_path / "w/summary.json").read_text())
    assert not wrecked["finetune_kept"]
    assert wrecked["finetune_train_top1"]["after"] < wrecked["finetune_train_top1"]["before"]
    assert wrecked["top1"] == wrecked["top1_before_finetune"]
