"""Static networks: plain ``nn.Module`` s with fixed shapes, no reference to a supernet.

A :class:`StaticNet` is what :meth:`Supernet.subnet` returns and what the transform consumes:
``features`` (stem, fixed first block, searchable blocks, head) -> global average pool ->
dropout -> classifier. The deploy forms built by :mod:`dwnas.transform` reuse :class:`StaticNet`
with other feature modules. Every layer says its ``config()`` and is rebuilt by ``from_config``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwnas.nn.functional import BNArgs, mbconv
from dwnas.space import Arch, Space


class ConvBNReLU6(nn.Sequential):
    """Conv (zero padding k//2, no bias) -> BN -> ReLU6: the stem and the 1x1 head."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride = kernel, stride

    def config(self) -> dict:
        return {"type": "ConvBNReLU6", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel": self.kernel, "stride": self.stride}

    @classmethod
    def from_config(cls, cfg: dict) -> ConvBNReLU6:
        return cls(cfg["in_channels"], cfg["out_channels"], cfg["kernel"], cfg["stride"])


class StaticMBConv(nn.Module):
    """An MBConv block of fixed shape, with the supernet's activation gate and padding convention.

    ``linear`` drops both ReLU6s (``alpha`` < 1 blends them in, for progressive linearisation).
    Expand ratio 1 has no expansion layer (MobileNetV2's first block).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand: int, linear: bool = False, alpha: float = 1.0):
        super().__init__()
        hidden = in_channels * expand
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.expand = kernel, stride, expand
        self.linear, self.alpha = bool(linear), float(alpha)
        if expand == 1:
            self.expand_conv, self.expand_bn = None, None
        else:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden,
                                 bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expand

    @property
    def shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def act_alpha(self) -> float:
        """0 = ReLU6 (deep), 1 = identity (linear)."""
        return self.alpha if self.linear else 0.0

    def forward(self, x: Tensor) -> Tensor:
        has_expansion = self.expand_conv is not None
        return mbconv(
            x,
            self.expand_conv.weight if has_expansion else None,
            BNArgs.of(self.expand_bn) if has_expansion else None,
            self.dw_conv.weight, BNArgs.of(self.dw_bn),
            self.project_conv.weight, BNArgs.of(self.project_bn),
            stride=self.stride, act_alpha=self.act_alpha, shortcut=self.shortcut,
            training=self.training,
        )

    def config(self) -> dict:
        return {"type": "StaticMBConv", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel": self.kernel, "stride": self.stride,
                "expand": self.expand, "linear": self.linear, "alpha": self.alpha}

    @classmethod
    def from_config(cls, cfg: dict) -> StaticMBConv:
        return cls(cfg["in_channels"], cfg["out_channels"], cfg["kernel"], cfg["stride"],
                   cfg["expand"], cfg["linear"], cfg["alpha"])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel}, s={self.stride}, "
                f"e={self.expand}, linear={self.linear}" + (f" (alpha={self.alpha})"
                                                            if self.linear and self.alpha < 1 else ""))


class StaticNet(nn.Module):
    """``features`` -> global average pool -> dropout -> ``classifier``.

    ``arch_json`` records the architecture the network was built from ("" if none)."""

    def __init__(self, features: list[nn.Module], classifier: nn.Linear, dropout: float = 0.0,
                 arch_json: str = ""):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.classifier = classifier
        self.dropout = float(dropout)
        self.arch_json = arch_json

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)

    def config(self) -> dict:
        return {"features": [m.config() for m in self.features],
                "in_features": self.classifier.in_features,
                "num_classes": self.classifier.out_features,
                "dropout": self.dropout, "arch": self.arch_json}

    @classmethod
    def from_config(cls, cfg: dict) -> StaticNet:
        """Rebuild an (untrained) network of the same structure, e.g. to load a state dict."""
        layer_types = {"ConvBNReLU6": ConvBNReLU6, "StaticMBConv": StaticMBConv}
        features = [layer_types[f["type"]].from_config(f) for f in cfg["features"]]
        return cls(features, nn.Linear(cfg["in_features"], cfg["num_classes"]), cfg["dropout"],
                   cfg["arch"])


def build_static(space: Space, arch: Arch, num_classes: int, dropout: float = 0.0,
                 linear_alpha: float = 1.0) -> StaticNet:
    """A freshly initialised static network for ``arch`` (validated against ``space``)."""
    space.validate(arch)
    fb = space.first_block
    features: list[nn.Module] = [
        ConvBNReLU6(3, space.stem_out, 3, stride=2),
        StaticMBConv(space.stem_out, space.first_out, fb.kernel, 1, fb.expand),
    ]
    for s, (stage, st) in enumerate(zip(arch.stages, space.stages, strict=True)):
        for b, block in enumerate(stage):
            features.append(StaticMBConv(
                space.stage_in(s) if b == 0 else space.stage_out(s), space.stage_out(s),
                block.kernel, st.stride if b == 0 else 1, block.expand, block.linear,
                linear_alpha,
            ))
    features.append(ConvBNReLU6(space.stage_out(len(space.stages) - 1), space.head_out, 1))
    net = StaticNet(features, nn.Linear(space.head_out, num_classes), dropout, arch.to_json())
    init_weights(net)
    return net


def init_weights(module: nn.Module) -> None:
    """torchvision MobileNetV2's initialisation: Kaiming-normal (fan-out) convs, unit BN,
    N(0, 0.01) classifier."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
