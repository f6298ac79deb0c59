"""HURRICANE-style hardware-aware NAS (Zhang et al., 2019; arXiv 1910.11609).

What the paper states: a much larger candidate-operator space than hand-designed ones, from which
the operators efficient *on the target device* are pre-selected, a single-path one-shot (SPOS)
supernet, and a two-stage search. The details below are this project's reading (docs/methods.md):

* **Operators** (:func:`candidate_ops`): inverted-residual MBConv and fused-MBConv (a dense kxk
  expansion instead of 1x1 + depthwise), each with several kernels and expand ratios and with
  squeeze-excitation on or off; ``skip`` (identity) in every layer but a stage's first.
* **Pre-selection** (:func:`preselect`): every operator is timed at every layer position on the
  device (BN folded, the measurement backend of ``dwnas measure``); per position the ``keep_ops``
  operators that run fastest there are kept, as the paper pre-selects the operators that are fast
  on the target device (by MACs per millisecond, as until issue 12, every pick was a heavy fused
  block that does much work quickly but is slow in absolute terms).
* **Supernet** (:class:`OpSupernet`): the project's macro structure (stem, fixed first block,
  stages, head) with one independent module per kept operator and layer, trained one uniformly
  sampled path per step (SPOS).
* **Two-stage search**: the layers of the last ``late_stages`` stages are trained and searched
  first, the earlier layers fixed to their fastest choice (``skip`` where allowed); then the earlier
  layers are trained and searched with the later ones fixed to the first stage's result. Each stage
  runs the project's evolutionary search (:class:`PathSearch`) under the latency budget, accuracy
  by BN-recalibrated evaluation of the path.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwnas.errors import DwnasError
from dwnas.search.evolution import EvolutionarySearch

KINDS = ("mbconv", "fused")
SKIP = "skip"
FORMAT = "dwnas-hurricane-supernet"


@dataclass(frozen=True)
class Op:
    """A candidate operator: block kind, kernel, expand ratio, squeeze-excitation."""

    kind: str
    kernel: int
    expand: int
    se: bool

    @property
    def name(self) -> str:
        return f"{self.kind}_k{self.kernel}_e{self.expand}" + ("_se" if self.se else "")

    @classmethod
    def parse(cls, name: str) -> Op:
        parts = name.split("_")
        try:
            kind, kernel, expand = parts[0], int(parts[1][1:]), int(parts[2][1:])
        except (IndexError, ValueError) as exc:
            raise DwnasError(f"hurricane: not an operator name: {name!r}") from exc
        if kind not in KINDS or parts[1][0] != "k" or parts[2][0] != "e" or parts[3:] not in ([], ["se"]):
            raise DwnasError(f"hurricane: not an operator name: {name!r}")
        return cls(kind, kernel, expand, parts[3:] == ["se"])


def candidate_ops(kinds, kernels, expands, se) -> list[Op]:
    """Every combination of the settings' choice lists (``skip`` is added per layer)."""
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise DwnasError(f"hurricane.kinds: unknown block kinds {bad}; use {list(KINDS)}")
    if any(k % 2 == 0 or k < 1 for k in kernels):
        raise DwnasError(f"hurricane.kernels: must be odd and positive (got {list(kernels)})")
    if any(e < 1 for e in expands):
        raise DwnasError(f"hurricane.expands: must be >= 1 (got {list(expands)})")
    return [Op(kind, k, e, s) for kind, k, e, s in
            itertools.product(sorted(kinds), sorted(kernels), sorted(expands), sorted(se))]


class SqueezeExcite(nn.Module):
    """Squeeze-excitation as in MobileNetV3: pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))


class OpBlock(nn.Module):
    """One candidate operator at one layer (zero padding k//2; conv-BN pairs in ``nn.Sequential``
    s, so :func:`dwnas.transform.deploy.fold_bn` folds them)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, op: Op):
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.op = in_channels, out_channels, stride, op
        hidden = in_channels * op.expand
        k = op.kernel
        if op.kind == "mbconv":
            layers: list[nn.Module] = []
            if op.expand != 1:
                layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                           nn.ReLU6(inplace=True)]
            layers += [nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
                       nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        else:
            layers = [nn.Conv2d(in_channels, hidden, k, stride, k // 2, bias=False),
                      nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.se = SqueezeExcite(hidden, max(8, in_channels // 4)) if op.se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hidden, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels))
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.body(x)))
        return y + x if self.shortcut else y

    def config(self) -> dict:
        return {"type": "HurricaneOp", "op": self.op.name, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride}


@dataclass(frozen=True)
class Layer:
    """A searchable layer of the macro structure; ``position`` names its shape for the table."""

    stage: int
    first: bool
    in_channels: int
    out_channels: int
    stride: int

    @property
    def position(self) -> str:
        return f"s{self.stage}.{'first' if self.first else 'rest'}"


def layers_of(space) -> list[Layer]:
    """One layer per block slot of the space at its greatest depths."""
    out = []
    for s, st in enumerate(space.stages):
        for b in range(max(st.depths)):
            out.append(Layer(s, b == 0, space.stage_in(s) if b == 0 else space.stage_out(s),
                             space.stage_out(s), st.stride if b == 0 else 1))
    return out


def _fixed_parts(space, num_classes: int):
    """(stem + first block, head + pool + classifier) as modules."""
    from dwnas.nn.static import ConvBNReLU6

    fb = space.first_block
    stem = nn.Sequential(ConvBNReLU6(3, space.stem_out, 3, stride=2),
                         OpBlock(space.stem_out, space.first_out, 1,
                                 Op("mbconv", fb.kernel, fb.expand, False)))
    head = nn.Sequential(ConvBNReLU6(space.stage_out(len(space.stages) - 1), space.head_out, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(space.head_out, num_classes))
    return stem, head


# -- device latency of every operator, pre-selection --------------------------------------------------
def profile_ops(space, ops: list[Op], resolution: int, measure, num_classes: int) -> dict:
    """``{"positions": {pos: {op: {"ms", "macs"}}}, "stem_ms", "head_ms", "call_overhead_ms"}``:
    every operator timed (BN folded) at every layer position, ``measure(module, shape) -> ms``."""
    from dwnas.nn.counters import count
    from dwnas.nn.static import init_weights
    from dwnas.progress import progress
    from dwnas.search.latency import spatial_sizes
    from dwnas.transform.deploy import fold_bn

    sizes = spatial_sizes(space, resolution)
    positions = {layer.position: layer for layer in layers_of(space)}
    jobs = []
    for pos, layer in positions.items():
        side = sizes[layer.stage][0] if layer.first else sizes[layer.stage][1]
        for op in ops:
            jobs.append((pos, op, layer, side))
    stem, head = _fixed_parts(space, num_classes)
    init_weights(stem)
    init_weights(head)
    last_side = sizes[-1][1]
    table = {
        "resolution": int(resolution),
        "call_overhead_ms": float(measure(nn.Identity(), (1, 1, 1))),
        "stem_ms": float(measure(fold_bn(stem), (3, resolution, resolution))),
        "head_ms": float(measure(fold_bn(head), (space.stage_out(len(space.stages) - 1),
                                                 last_side, last_side))),
        "positions": {pos: {} for pos in positions},
    }
    for pos, op, layer, side in progress(jobs, desc="hurricane profile"):
        block = OpBlock(layer.in_channels, layer.out_channels, layer.stride, op)
        init_weights(block)
        deployed = fold_bn(block)
        table["positions"][pos][op.name] = {
            "ms": float(measure(deployed, (layer.in_channels, side, side))),
            "macs": count(deployed, side, layer.in_channels).macs,
        }
    return table


def preselect(entries: dict[str, dict], keep: int) -> list[str]:
    """The ``keep`` operators with the lowest measured latency at this position, fastest first
    (the fastest is always kept, so every budget the full set could meet stays reachable)."""
    if keep < 1:
        raise DwnasError(f"hurricane.keep_ops: must be >= 1 (got {keep})")
    return sorted(entries, key=lambda n: (entries[n]["ms"], n))[:keep]


def layer_choices(space, table: dict, keep: int) -> list[list[str]]:
    """Per layer, its pre-selected operators (fastest first), plus ``skip`` where the
    layer keeps the shape (every layer but a stage's first)."""
    kept = {pos: preselect(entries, keep) for pos, entries in table["positions"].items()}
    return [kept[layer.position] + ([] if layer.first else [SKIP]) for layer in layers_of(space)]


def fastest_op(table: dict, layer: Layer, allowed: list[str]) -> str:
    """The fastest of a layer's allowed operators (``skip`` costs nothing): where a layer not
    searched yet sits, so that the first stage's budget check is no stricter than the whole space's
    at the fixed layers."""
    entries = table["positions"][layer.position]
    return min(allowed, key=lambda n: (0.0 if n == SKIP else entries[n]["ms"], n))


def path_latency(space, table: dict, path) -> float:
    """Predicted latency (ms) of a path: its timed parts, the call overhead paid once."""
    parts = [table["stem_ms"], table["head_ms"]]
    for layer, choice in zip(layers_of(space), path, strict=True):
        if choice != SKIP:
            parts.append(table["positions"][layer.position][choice]["ms"])
    return sum(parts) - table["call_overhead_ms"] * (len(parts) - 1)


# -- the single-path one-shot supernet ----------------------------------------------------------------
class OpSupernet(nn.Module):
    """One independent module per layer and allowed operator; ``forward(x, path)`` runs one path."""

    def __init__(self, space, choices: list[list[str]], num_classes: int):
        super().__init__()
        from dwnas.nn.static import init_weights

        self.space, self.choices, self.num_classes = space, [list(c) for c in choices], num_classes
        self.stem, head = _fixed_parts(space, num_classes)
        self.head, self.classifier = head[0], head[3]
        self.layers = nn.ModuleList(
            nn.ModuleDict({name: OpBlock(layer.in_channels, layer.out_channels, layer.stride,
                                         Op.parse(name))
                           for name in allowed if name != SKIP})
            for layer, allowed in zip(layers_of(space), self.choices, strict=True))
        init_weights(self)

    def check(self, path) -> None:
        problems = [f"layer {i}: {choice!r} not among {allowed}"
                    for i, (choice, allowed) in enumerate(zip(path, self.choices, strict=False))
                    if choice not in allowed]
        if len(path) != len(self.choices):
            problems.insert(0, f"path has {len(path)} layers, the supernet {len(self.choices)}")
        if problems:
            raise DwnasError("hurricane: invalid path:\n  " + "\n  ".join(problems))

    def forward(self, x: Tensor, path) -> Tensor:
        x = self.stem(x)
        for layer, choice in zip(self.layers, path, strict=True):
            if choice != SKIP:
                x = layer[choice](x)
        x = torch.flatten(F.adaptive_avg_pool2d(self.head(x), 1), 1)
        return self.classifier(x)

    def extract(self, path):
        """The path as a plain :class:`~dwnas.nn.static.StaticNet` (own copies of the weights)."""
        from dwnas.nn.static import StaticNet

        self.check(path)
        features = [copy.deepcopy(m) for m in self.stem]
        features += [copy.deepcopy(layer[c]) for layer, c in zip(self.layers, path, strict=True)
                     if c != SKIP]
        features.append(copy.deepcopy(self.head))
        net = StaticNet(features, copy.deepcopy(self.classifier), 0.0, json.dumps(list(path)))
        return net.train(self.training)

    def checkpoint(self, extra: dict) -> dict:
        return {"format": FORMAT, "space": self.space.to_dict(), "choices": self.choices,
                "num_classes": self.num_classes, "state_dict": self.state_dict(), "extra": extra}

    @classmethod
    def load(cls, path) -> tuple[OpSupernet, dict]:
        from pathlib import Path

        from dwnas.space import Space

        path = Path(path)
        if not path.is_file():
            raise DwnasError(f"{path}: HURRICANE supernet not found")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a file that is not an archive
            raise DwnasError(f"{path}: not a HURRICANE supernet ({type(exc).__name__})") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise DwnasError(f"{path}: not a HURRICANE supernet (no format={FORMAT!r} marker)")
        net = cls(Space.from_dict(ckpt["space"]), ckpt["choices"], ckpt["num_classes"])
        net.load_state_dict(ckpt["state_dict"])
        return net.eval(), ckpt


# -- search -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpPath:
    """One operator name per layer; JSON is the list of names."""

    ops: tuple[str, ...]

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(list(self.ops), indent=indent)


class PathSpace:
    """The layers ``searched`` take any of their choices; the others stay at ``fixed``."""

    def __init__(self, choices: list[list[str]], searched: set[int], fixed: list[str]):
        self.choices, self.searched, self.fixed = choices, set(searched), list(fixed)

    def _choose(self, i: int, rng) -> str:
        return rng.choice(self.choices[i]) if i in self.searched else self.fixed[i]

    def sample(self, rng) -> OpPath:
        return OpPath(tuple(self._choose(i, rng) for i in range(len(self.choices))))

    def mutate(self, path: OpPath, rng, p: float = 0.1, p_res: float = 0.0) -> OpPath:
        return OpPath(tuple(self._choose(i, rng) if i in self.searched and rng.random() < p else op
                            for i, op in enumerate(path.ops)))

    def crossover(self, a: OpPath, b: OpPath, rng) -> OpPath:
        return OpPath(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.ops, b.ops, strict=True)))

    def fastest(self, op_ms) -> OpPath:
        """Per searched layer the operator with the least ``op_ms(layer, name)``."""
        return OpPath(tuple(min(self.choices[i], key=lambda n, i=i: (op_ms(i, n), n))
                            if i in self.searched else self.fixed[i]
                            for i in range(len(self.choices))))


class PathSearch(EvolutionarySearch):
    """The project's evolutionary search (population, top parents, half mutation and half
    crossover, latency-feasible children) over a :class:`PathSpace`."""

    def __init__(self, space: PathSpace, accuracy, latency, settings, op_ms):
        super().__init__(space, accuracy, latency, settings, mode="double-win")
        self.mode = "hurricane"  # labels and seeds only: no deep-only rewriting of candidates
        self._op_ms = op_ms

    def fastest(self) -> OpPath:
        return self.space.fastest(self._op_ms)

    def check_feasible(self, budget: float) -> None:
        fastest = self.fastest()
        best = self._latency(fastest)
        if best > budget:
            raise DwnasError(f"latency budget {budget:g} ms is infeasible for HURRICANE: the fastest "
                             f"pre-selected path is predicted at {best:.4g} ms")


def split_layers(space, late_stages: int) -> tuple[set[int], set[int]]:
    """(early, late) layer indices: late = the layers of the last ``late_stages`` stages."""
    n = len(space.stages)
    if not 1 <= late_stages < n:
        raise DwnasError(f"hurricane.late_stages: must be in [1, {n - 1}] for a space of {n} stages "
                         f"(got {late_stages})")
    late = {i for i, layer in enumerate(layers_of(space)) if layer.stage >= n - late_stages}
    return set(range(len(layers_of(space)))) - late, late


def sampler(choices: list[list[str]], searched: set[int], fixed: list[str], seed: int, salt: int):
    """``step -> path``: searched layers uniform over their choices, a pure function of the step
    (``salt`` tells the two training stages apart)."""
    from dwnas.train.sampling import step_rng

    space = PathSpace(choices, searched, fixed)
    return lambda step: space.sample(step_rng(seed, step, salt=salt)).ops


# -- the two pipeline stages ------------------------------------------------------------------------
SUPERNET_KEYS = ("kinds", "kernels", "expands", "se", "keep_ops", "late_stages", "resolution",
                 "recipe")
SEARCH_KEYS = ("population", "generations", "stage2_epochs", "finetune_epochs", "recipe")


def settings_for(section: dict, keys: tuple[str, ...]) -> dict:
    """The part of the params section baselines.hurricane one step needs (each step gets only
    its keys, so that changing a search setting does not retrain the supernet)."""
    if not isinstance(section, dict):
        raise DwnasError("baselines.hurricane: must be a mapping")
    missing = sorted(set(keys) - set(section))
    if missing:
        raise DwnasError(f"baselines.hurricane: missing keys {missing}")
    if "resolution" in keys and section["resolution"] < 16:
        raise DwnasError(f"baselines.hurricane.resolution: must be >= 16 (got {section['resolution']})")
    return section


def run_supernet(setup, *, space: dict, settings: dict, device: str = "host",
                 measure_settings: dict | None = None) -> dict:
    """Stage 1: time every candidate operator at every layer of ``space`` (the params space) on
    ``device``, pre-select the fastest, train the SPOS supernet's late layers; write
    ``setup.out``: ``supernet.pt``, ``ops.json``, ``summary.json``. ``settings``: the params section
    ``baselines.hurricane``; ``measure_settings``: the timing settings (warmup, iters, threads,
    statistic, runtime). Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import fit, recipe_of
    from dwnas.data.loaders import num_classes
    from dwnas.io import atomic_dir, torch_save, write_json
    from dwnas.measure.api import latency_timer
    from dwnas.space import Space
    from dwnas.train.engine import seed_everything

    settings = settings_for(settings, SUPERNET_KEYS)
    recipe = recipe_of(settings["recipe"], "baselines.hurricane.recipe", single_path=True)
    macro = Space.from_params(space)
    resolution = settings["resolution"]
    early, late = split_layers(macro, settings["late_stages"])
    ops = candidate_ops(settings["kinds"], settings["kernels"], settings["expands"], settings["se"])
    n_classes = num_classes(setup.prepared)
    timing = dict(measure_settings or {})
    statistic = timing.pop("statistic", "median")  # the latency table's statistic (profile.*)
    runtime = timing.pop("runtime", None)  # and its runtime: operators timed as deployed
    table = profile_ops(macro, ops, resolution, latency_timer(device, timing, statistic, runtime),
                        n_classes)
    choices = layer_choices(macro, table, settings["keep_ops"])
    defaults = [fastest_op(table, layer, allowed) for layer, allowed
                in zip(layers_of(macro), choices, strict=True)]
    seed_everything(setup.seed)  # the initial weights follow the seed, whatever ran before
    supernet = OpSupernet(macro, choices, n_classes)
    sample = sampler(choices, late, defaults, setup.seed, salt=1)
    params = {"settings": settings, "device": device, "seed": setup.seed}
    with track.stage_run("hurricane_supernet", params) as stage:
        history = fit(supernet, setup.prepared, recipe, resolution, setup.seed,
                      workers=setup.workers, forward=lambda x, step: supernet(x, sample(step)),
                      desc="hurricane stage 1")
        for epoch in history:
            stage.log_metrics(epoch, step=epoch["epoch"])
        meta = {"device": device, "table": table, "early": sorted(early), "late": sorted(late),
                "defaults": defaults, "resolution": resolution, "stage1": history,
                "candidates": [op.name for op in ops]}
        summary = {"device": device, "candidates": len(ops),
                   "kept_per_layer": [len(c) for c in choices], "choices": choices,
                   "late_layers": sorted(late), "early_layers": sorted(early),
                   "space_size_full": math.prod(len(ops) + (not layer.first)
                                                for layer in layers_of(macro)),
                   "space_size_kept": math.prod(len(c) for c in choices),
                   "stage1_epochs": recipe.epochs, "stage1": history}
        out = Path(setup.out)
        with atomic_dir(out) as tmp:
            torch_save(supernet.checkpoint(meta), tmp / "supernet.pt")
            write_json(tmp / "ops.json", {"table": table, "choices": choices, "defaults": defaults})
            write_json(tmp / "summary.json", summary)
        stage.log_metrics({"candidates": len(ops), "stage1_epochs": recipe.epochs})
        stage.log_artifact(out / "summary.json")
    return summary


def run_search(setup, *, supernet_file: str | Path, lut: str | Path, budgets: dict, budget: str,
               settings: dict, search_settings: dict) -> dict:
    """Stage 2: the two-stage search under the budget labelled ``budget`` of ``budgets`` (the
    params ``search.budgets``, resolved against the main latency table ``lut``), training the
    early layers between the two searches and fine-tuning the found path; write ``setup.out``
    (:func:`~dwnas.baselines.common.finish`). ``settings``: the params section
    ``baselines.hurricane``; ``search_settings``: the evolution's other settings (the params
    section ``search``'s). Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import finish, fit, images_seen, recipe_of
    from dwnas.search.budgets import resolve_budgets
    from dwnas.search.evolution import SearchSettings, deep_only
    from dwnas.search.latency import LatencyTable

    settings = settings_for(settings, SEARCH_KEYS)
    supernet, ckpt = OpSupernet.load(supernet_file)
    meta = ckpt["extra"]
    space, table, resolution = supernet.space, meta["table"], int(meta["resolution"])
    early, late, defaults = set(meta["early"]), set(meta["late"]), list(meta["defaults"])
    main_table = LatencyTable.load(lut, space=space, device=meta["device"])
    reference = main_table.predict(deep_only(space.largest()), "deep")
    # a network runs at another speed than the sum of its separately timed parts: apply the main
    # table's one calibration scale, so that a budget means the same measured latency for both
    scale = main_table.scale
    resolved = resolve_budgets(budgets, reference)
    if budget not in resolved:
        raise DwnasError(f"--budget {budget}: not one of the budgets {list(resolved)}")
    budget_ms = resolved[budget]
    try:
        evolution = SearchSettings(population=settings["population"],
                                   generations=settings["generations"],
                                   **search_settings, seed=setup.seed)
    except TypeError as exc:
        raise DwnasError(f"search settings: {exc}") from exc
    data = setup.eval_data(resolution)
    layers = layers_of(space)

    def accuracy(path) -> float:
        return data.accuracy(supernet.extract(path.ops), resolution)["top1"]

    def latency(path) -> float:
        return scale * path_latency(space, table, path.ops)

    def op_ms(i: int, name: str) -> float:
        return 0.0 if name == SKIP else table["positions"][layers[i].position][name]["ms"]

    def search(searched: set[int], fixed: list[str], label: str):
        engine = PathSearch(PathSpace(supernet.choices, searched, fixed), accuracy, latency,
                            evolution, op_ms)
        return engine.run(budget_ms, label=f"hurricane {label} {budget}")

    params = {"budget": budget, "budget_ms": budget_ms, "settings": settings, "seed": setup.seed}
    with track.stage_run("baseline_hurricane", params) as stage:
        first = search(late, defaults, "stage 1")
        stage2 = []
        if settings["stage2_epochs"] > 0:
            recipe2 = recipe_of({**settings["recipe"], "epochs": settings["stage2_epochs"]},
                                "baselines.hurricane.recipe", single_path=True)
            sample = sampler(supernet.choices, early, list(first.arch.ops), setup.seed, salt=2)
            stage2 = fit(supernet, setup.prepared, recipe2, resolution, setup.seed,
                         workers=setup.workers, forward=lambda x, step: supernet(x, sample(step)),
                         desc=f"hurricane stage 2 {budget}")
        second = search(early, list(first.arch.ops), "stage 2")
        path = list(second.arch.ops)
        net = supernet.extract(path)
        finetune = []
        if settings["finetune_epochs"] > 0:
            recipe_ft = recipe_of({**settings["recipe"], "epochs": settings["finetune_epochs"]},
                                  "baselines.hurricane.recipe", single_path=True)
            finetune = fit(net, setup.prepared, recipe_ft, resolution, setup.seed,
                           workers=setup.workers, desc=f"hurricane fine-tune {budget}")
        return finish("hurricane", budget, net, setup, resolution,
                      evaluation=data,
                      description={"resolution": resolution, "path": path,
                                   "layers": [vars(layer) for layer in layers],
                                   "network": net.config()},
                      extra_files={},
                      summary_extra={"budget_ms": budget_ms,
                                     "latency_predicted_ms": latency(second.arch),
                                     "latency_scale": scale,
                                     "path": path, "stage1_top1": first.accuracy,
                                     "stage2_top1": second.accuracy,
                                     "stage2_epochs": settings["stage2_epochs"],
                                     "finetune_epochs": settings["finetune_epochs"],
                                     "stage2": stage2, "finetune": finetune,
                                     "images_seen": images_seen(meta["stage1"], stage2, finetune),
                                     "layers_kept": sum(op != SKIP for op in path)},
                      params=params, run=stage)
