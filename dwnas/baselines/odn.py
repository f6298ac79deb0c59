"""ODN, Optimally Deep Networks (Tareen et al., 2025): progressive depth expansion.

A backbone is an ordered list of residual blocks after a stem. At depth ``d`` the network is the
stem, the first ``d`` blocks, then a head on block ``d``'s output (global pooling and a linear
classifier; the MBConv backbone keeps its 1x1 head convolution). Training starts shallow; blocks are
appended as the earlier ones converge, until a target accuracy is reached, so the network keeps
only the depth the dataset needs.

Backbones:

* ``resnet18``: ResNet-18's eight basic blocks behind its 7x7 stem and max-pool, channels
  ``w, w, 2w, 2w, 4w, 4w, 8w, 8w`` (``w = 64`` is torchvision's ResNet-18; smaller ``w`` keeps the
  default pipeline fast);
* ``mbconv``: the project space's largest deep subnet (every stage at its greatest depth, kernel
  and expand ratio), its stem and fixed first block counted as the stem.

A new block with a shortcut is initialised with its last BN's scale at zero, so it starts as its
shortcut and appending an identity-shortcut block does not change what the network computes
(project's choice, as in zero-init residual training); a block without a shortcut keeps its
ordinary initialisation (zeroing it would make the network's output independent of its input). The head is kept when the width does not change and
re-initialised when it does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from dwnas.config import validate_section
from dwnas.errors import DwnasError

BACKBONES = ("resnet18", "mbconv")


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN (ReLU between), a 1x1 conv-BN shortcut when the
    shape changes, ReLU after the sum. Conv-BN pairs sit in ``nn.Sequential`` s so they fold."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))

    def config(self) -> dict:
        return {"type": "BasicBlock", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride}

    def last_bn(self) -> nn.BatchNorm2d:
        return self.body[4]


class ResNetStem(nn.Sequential):
    """ResNet's stem: 7x7 stride-2 conv-BN-ReLU, then 3x3 stride-2 max-pool."""

    def __init__(self, width: int):
        super().__init__(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.width = width

    def config(self) -> dict:
        return {"type": "ResNetStem", "out_channels": self.width}


def resnet18_plan(width: int) -> list[tuple[int, int]]:
    """(output channels, stride) of ResNet-18's eight basic blocks at base width ``width``."""
    return [(width * m, s) for m, s in ((1, 1), (1, 1), (2, 2), (2, 1), (4, 2), (4, 1),
                                        (8, 2), (8, 1))]


@dataclass
class Backbone:
    """How to build the stem, block ``i`` and the head of one backbone."""

    name: str
    stem: object
    stem_out: int
    blocks: list
    head: object

    @property
    def full_depth(self) -> int:
        return len(self.blocks)

    def block_out(self, depth: int) -> int:
        return self.stem_out if depth == 0 else self.blocks[depth - 1][0]


def backbone(name: str, space=None, resnet_width: int = 64) -> Backbone:
    """The recipe of a backbone (``space``: the params space, for ``mbconv``)."""
    if name == "resnet18":
        if resnet_width < 1:
            raise DwnasError(f"odn.resnet_width must be >= 1 (got {resnet_width})")
        plan = resnet18_plan(resnet_width)
        blocks, cin = [], resnet_width
        for cout, stride in plan:
            blocks.append((cout, lambda cin=cin, cout=cout, stride=stride:
                           BasicBlock(cin, cout, stride)))
            cin = cout
        return Backbone(name, lambda: ResNetStem(resnet_width), resnet_width, blocks,
                        lambda c, n: (None, nn.Linear(c, n)))
    if name == "mbconv":
        from dwnas.nn.static import ConvBNReLU6, StaticMBConv

        if space is None:
            raise DwnasError("odn: the mbconv backbone needs the params space")
        fb = space.first_block
        arch = space.largest()
        blocks, cin = [], space.first_out
        for s, stage in enumerate(arch.stages):
            for b, block in enumerate(stage):
                cout, stride = space.stage_out(s), space.stages[s].stride if b == 0 else 1
                blocks.append((cout, lambda cin=cin, cout=cout, stride=stride, block=block:
                               StaticMBConv(cin, cout, block.kernel, stride, block.expand)))
                cin = cout

        def stem():
            return [ConvBNReLU6(3, space.stem_out, 3, stride=2),
                    StaticMBConv(space.stem_out, space.first_out, fb.kernel, 1, fb.expand)]

        return Backbone(name, stem, space.first_out, blocks,
                        lambda c, n: (ConvBNReLU6(c, space.head_out, 1),
                                      nn.Linear(space.head_out, n)))
    raise DwnasError(f"odn backbone {name!r}: use one of {BACKBONES}")


def _init(module: nn.Module) -> None:
    from dwnas.nn.static import init_weights

    init_weights(module)


def _zero_last_bn(block: nn.Module) -> None:
    """Zero the last BN's scale only where a shortcut carries the signal past it (the block then
    starts as its shortcut): without one, a zero scale makes the block's output a constant and
    the whole network's output independent of its input (MBConv blocks that change stride or
    width have no shortcut; they keep their ordinary initialisation)."""
    with torch.no_grad():
        if hasattr(block, "last_bn"):  # a ResNet basic block: identity or downsample shortcut
            block.last_bn().weight.zero_()
        elif block.shortcut:  # StaticMBConv
            block.project_bn.weight.zero_()


def build(bb: Backbone, depth: int, num_classes: int):
    """A freshly initialised :class:`~dwnas.nn.static.StaticNet` of ``bb`` at ``depth`` blocks."""
    from dwnas.nn.static import StaticNet

    if not 0 <= depth <= bb.full_depth:
        raise DwnasError(f"odn: depth {depth} outside [0, {bb.full_depth}] for {bb.name}")
    stem = bb.stem()
    features = list(stem) if isinstance(stem, list) else [stem]
    features += [make() for _, make in bb.blocks[:depth]]
    head_conv, classifier = bb.head(bb.block_out(depth), num_classes)
    if head_conv is not None:
        features.append(head_conv)
    net = StaticNet(features, classifier)
    _init(net)
    return net


def _stem_len(bb: Backbone) -> int:
    return 2 if bb.name == "mbconv" else 1


def grow(bb: Backbone, net, num_classes: int):
    """``net`` with one more block: earlier layers keep their weights, the new block starts as the
    identity where it can, the head is kept when the width allows."""
    from dwnas.nn.static import StaticNet

    stem_len = _stem_len(bb)
    has_head_conv = bb.name == "mbconv"
    depth = len(net.features) - stem_len - int(has_head_conv)
    if depth >= bb.full_depth:
        raise DwnasError(f"odn: {bb.name} is already at its full depth {bb.full_depth}")
    body = list(net.features)[: stem_len + depth]
    block = bb.blocks[depth][1]()
    _init(block)
    _zero_last_bn(block)
    if bb.block_out(depth + 1) == bb.block_out(depth):
        head = list(net.features)[stem_len + depth:]
        classifier = net.classifier
    else:
        head_conv, classifier = bb.head(bb.block_out(depth + 1), num_classes)
        head = [head_conv] if head_conv is not None else []
        for module in (*head, classifier):
            _init(module)
    return StaticNet([*body, block, *head], classifier)


def depth_of(bb: Backbone, net) -> int:
    return len(net.features) - _stem_len(bb) - int(bb.name == "mbconv")


@dataclass(frozen=True)
class Criterion:
    """When to grow and when to stop (docs/methods.md).

    After each training round (``epochs`` of the recipe, a fresh warm-up + cosine schedule) the
    network is evaluated. Stop when top-1 >= ``target_top1``, or when ``max_epochs`` are spent, or
    at full depth once it has converged. The current blocks have *converged* when the round
    improved top-1 by less than ``min_delta`` over the previous round, or after
    ``max_rounds_per_depth`` rounds at this depth; then one block is appended.
    """

    target_top1: float
    min_delta: float
    max_rounds_per_depth: int
    max_epochs: int

    def check(self) -> None:
        """Hold the fields to the schema's ``baselines.odn`` rules (``--criterion`` is JSON)."""
        validate_section(asdict(self), "baselines.odn", "baselines.odn", only_given=True)

    def decide(self, top1: float, gain: float, rounds_at_depth: int, epochs_used: int,
               at_full_depth: bool) -> str:
        """``stop:<reason>``, ``grow`` or ``train`` (another round at this depth)."""
        if top1 >= self.target_top1:
            return "stop:target reached"
        converged = gain < self.min_delta or rounds_at_depth >= self.max_rounds_per_depth
        if at_full_depth and converged:
            return "stop:full depth converged below the target"
        if epochs_used >= self.max_epochs:
            return "stop:epoch budget spent"
        return "grow" if converged and not at_full_depth else "train"


def param_bytes(net: nn.Module) -> int:
    """Parameter memory (float32) of the deployed network: BN folded, so BN's affine parameters and
    running statistics do not count."""
    return 4 * sum(p.numel() for p in net.parameters())


def run(setup, *, backbone_name: str, resolution: int, criterion: dict, recipe: dict,
        space: dict | None = None, resnet_width: int = 64, start_depth: int = 1) -> dict:
    """Grow ``backbone_name`` (``resnet18`` or ``mbconv``, the latter from ``space``, the params
    space) from ``start_depth`` blocks by training rounds of ``recipe`` (the params section
    ``baselines.odn.recipe``) until ``criterion`` (:class:`Criterion`'s fields) stops it; write
    ``setup.out`` (:func:`~dwnas.baselines.common.finish`). Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import finish, fit, images_seen, log, recipe_of
    from dwnas.data.loaders import num_classes
    from dwnas.space import Space
    from dwnas.train.engine import seed_everything
    from dwnas.transform.deploy import deploy_forms

    training = recipe_of(recipe, "baselines.odn.recipe")
    try:
        rule = Criterion(**criterion)
    except TypeError as exc:
        raise DwnasError(f"odn criterion: {exc}") from exc
    rule.check()
    macro = Space.from_params(space) if space is not None else None
    bb = backbone(backbone_name, macro, resnet_width)
    if not 1 <= start_depth <= bb.full_depth:
        raise DwnasError(f"--start-depth must be in [1, {bb.full_depth}] (got {start_depth})")
    n_classes = num_classes(setup.prepared)
    data = setup.eval_data(resolution)
    seed_everything(setup.seed)  # the initial weights follow the seed, whatever ran before
    net = build(bb, start_depth, n_classes)
    rounds, previous, at_depth, epochs_used = [], None, 0, 0
    params = {"backbone": backbone_name, "criterion": criterion, "recipe": recipe,
              "start_depth": start_depth, "resolution": resolution, "seed": setup.seed}
    with track.stage_run("baseline_odn", params) as stage:
        while True:
            depth = depth_of(bb, net)
            history = fit(net, setup.prepared, training, resolution, setup.seed + len(rounds),
                          workers=setup.workers, desc=f"odn {backbone_name} depth {depth}")
            epochs_used += training.epochs
            at_depth += 1
            accuracy = data.accuracy(net, resolution)
            gain = accuracy["top1"] - previous if previous is not None else float("inf")
            decision = rule.decide(accuracy["top1"], gain, at_depth, epochs_used,
                                   depth == bb.full_depth)
            rounds.append({"round": len(rounds) + 1, "depth": depth, "top1": accuracy["top1"],
                           "gain": None if previous is None else gain, "decision": decision,
                           "loss": history[-1]["loss"], "images": images_seen(history)})
            stage.log_metrics({"depth": depth, "top1": accuracy["top1"]}, step=len(rounds))
            log(f"odn {backbone_name}: round {len(rounds)} at depth {depth}: top-1 "
                f"{accuracy['top1']:.4f} -> {decision}")
            previous = accuracy["top1"]
            if decision.startswith("stop"):
                break
            if decision == "grow":
                net = grow(bb, net, n_classes)
                at_depth = 0
        found = depth_of(bb, net)
        full = build(bb, bb.full_depth, n_classes).eval()
        bytes_found = param_bytes(deploy_forms(net.eval())[0])
        bytes_full = param_bytes(deploy_forms(full)[0])
        return finish("odn", backbone_name, net, setup, resolution, evaluation=data,
                      description={"backbone": backbone_name, "depth": found,
                                   "full_depth": bb.full_depth, "resolution": resolution,
                                   "resnet_width": (resnet_width if backbone_name == "resnet18"
                                                    else None),
                                   "network": net.config()},
                      extra_files={},
                      summary_extra={"backbone": backbone_name, "depth_found": found,
                                     "full_depth": bb.full_depth,
                                     "memory_bytes_found": bytes_found,
                                     "memory_bytes_full": bytes_full,
                                     "memory_saved": 1.0 - bytes_found / bytes_full,
                                     "target_top1": rule.target_top1,
                                     "target_reached": accuracy["top1"] >= rule.target_top1,
                                     "stop_reason": decision.removeprefix("stop:"),
                                     "epochs": epochs_used, "rounds": rounds,
                                     "images_seen": sum(r["images"] for r in rounds)},
                      params=params, run=stage)
