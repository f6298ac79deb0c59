"""HURRICANE's candidate operators and the layers they fill: the operator names, the MBConv and
fused-MBConv blocks (with or without squeeze-excitation), and the searchable layers of the
project's macro structure with its fixed stem and head."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dwnas.errors import DwnasError

KINDS = ("mbconv", "fused")
SKIP = "skip"


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


def fixed_parts(space, num_classes: int):
    """(stem + first block, head + pool + classifier) as modules."""
    from dwnas.nn.static import ConvBNReLU6

    fb = space.first_block
    stem = nn.Sequential(ConvBNReLU6(3, space.stem_out, 3, stride=2),
                         OpBlock(space.stem_out, space.first_out, 1,
                                 Op("mbconv", fb.kernel, fb.expand, False)))
    head = nn.Sequential(ConvBNReLU6(space.stage_out(len(space.stages) - 1), space.head_out, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(space.head_out, num_classes))
    return stem, head
