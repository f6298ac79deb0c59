"""Counters: parameters, MACs and layer depth, checked against torchvision's MobileNetV2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchvision.models import mobilenet_v2

from dwnas.nn.counters import count
from dwnas.nn.static import build_static
from dwnas.space import Arch, BlockArch, Space
from dwnas.transform import count_arch, fold_deep, transform

REPO = Path(__file__).resolve().parents[1]
MOBILENET_V2_DEPTHS = (2, 3, 4, 3, 3, 1)
MOBILENET_V2_PARAMS = 3_504_872  # torchvision's published figure for mobilenet_v2 (1000 classes)


@pytest.fixture(scope="module")
def imagenet() -> Space:
    return Space.from_params(yaml.safe_load((REPO / "params/imagenet.yaml").read_text())["space"])


def mobilenet_v2_arch(linear: bool = False) -> Arch:
    return Arch(tuple(tuple(BlockArch(3, 6, linear) for _ in range(d)) for d in MOBILENET_V2_DEPTHS),
                224)


def test_mobilenet_v2_member_counts_exactly_like_torchvision(imagenet):
    ours = count(build_static(imagenet, mobilenet_v2_arch(), 1000), 224)
    reference = count(mobilenet_v2(), 224)
    assert ours == reference
    assert ours.params == MOBILENET_V2_PARAMS
    assert ours.macs == 300_774_272  # conv + linear MACs; the usual "300 M"
    # stem 1 + first block 2 + 16 blocks x 3 + head 1 + classifier 1
    assert ours.depth == ours.weight_layers == 53


def test_depth_is_the_longest_path_not_the_layer_count():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1))
            self.b = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = self.a(x) + torch.relu(self.b(x))
            return self.fc(y.mean(dim=(2, 3)))

    counts = count(TwoBranches(), 8)
    assert (counts.depth, counts.weight_layers) == (3, 4)
    assert counts.macs == 8 * 8 * (4 * 3 * 9 + 4 * 4 + 4 * 3) + 4 * 2
    assert counts.params == (4 * 27 + 4) + (16 + 4) + (12 + 4) + (8 + 2)


def test_shallow_counts_of_a_linearised_mobilenet_v2(imagenet):
    deep = build_static(imagenet, mobilenet_v2_arch(linear=True), 1000).eval()
    folded, shallow = count(fold_deep(deep), 224), count(transform(deep), 224)
    assert folded.macs == 300_774_272 and folded.depth == 53
    assert shallow.depth == 53 - 16 * 2  # every searchable block becomes one conv
    c = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    maps = [56, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7]
    merged = sum(m * m * c[i] * c[i + 1] * 9 for i, m in enumerate(maps))
    fixed = 112 * 112 * (3 * 32 * 9 + 32 * 9 + 32 * 16) + 7 * 7 * 320 * 1280 + 1280 * 1000
    assert shallow.macs == merged + fixed
    # BN folded: one bias per conv channel instead of BN's gamma and beta
    with_bn = count(deep, 224).params
    bn_channels = sum(m.num_features for m in deep.modules() if isinstance(m, nn.BatchNorm2d))
    conv_channels = sum(m.out_channels for m in deep.modules() if isinstance(m, nn.Conv2d))
    assert folded.params == with_bn - 2 * bn_channels + conv_channels


def test_count_arch_and_mode_restoration(imagenet):
    net = build_static(imagenet, imagenet.smallest(), 10).train()
    count(net, 64)
    assert net.training
    counts = count_arch(imagenet, imagenet.smallest().with_resolution(128), num_classes=10)
    assert counts["deep"].resolution == 128
    assert counts["shallow"].macs == counts["deep"].macs  # no linear block: nothing merged
    assert counts["shallow"].depth == counts["deep"].depth
