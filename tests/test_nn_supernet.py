"""Supernet: weight sharing, subnet extraction, channel sorting, activation gate, border
(non-linear blocks are torchvision's block, linear blocks pad once)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torchvision.models.mobilenetv2 import InvertedResidual

from dwnas.errors import DwnasError
from dwnas.nn.functional import act
from dwnas.nn.static import StaticMBConv, StaticNet
from dwnas.nn.supernet import ElasticMBConv, Supernet
from dwnas.space import Arch, BlockArch, Space
from dwnas.transform.verification import randomize_bn_

REPO = Path(__file__).resolve().parents[1]


def space_of(name: str) -> Space:
    return Space.from_params(yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["space"])


@pytest.fixture(scope="module")
def smoke() -> Space:
    return space_of("smoke")


@pytest.fixture(scope="module")
def supernet(smoke) -> Supernet:
    torch.manual_seed(0)
    return randomize_bn_(Supernet(smoke, num_classes=5), seed=1).eval()


def literal_block(block: StaticMBConv, x: torch.Tensor) -> torch.Tensor:
    """REFERENCES.md 4.3 spelled out: zero-pad the INPUT by k//2, run expansion and depthwise
    unpadded (eval-mode BN). The convention of linear blocks only."""
    p = block.kernel // 2
    h = F.pad(x, (p, p, p, p))
    if block.expand_conv is not None:
        h = act(block.expand_bn(F.conv2d(h, block.expand_conv.weight)), block.act_alpha)
    h = F.conv2d(h, block.dw_conv.weight, stride=block.stride, groups=block.hidden)
    h = act(block.dw_bn(h), block.act_alpha)
    y = block.project_bn(F.conv2d(h, block.project_conv.weight))
    return y + x if block.shortcut else y


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("size", [9, 10, 13])
def test_linear_block_follows_the_literal_pad_once_convention_and_standard_shapes(stride, kernel, size):
    torch.manual_seed(kernel + size)
    block = randomize_bn_(StaticMBConv(8, 8, kernel, stride, expand=3, linear=True)).eval()
    x = torch.randn(2, 8, size, size)
    with torch.no_grad():
        y = block(x)
        assert torch.allclose(y, literal_block(block, x), atol=1e-5, rtol=1e-5)
        standard = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                            stride=stride, padding=kernel // 2)
    assert y.shape[-2:] == standard.shape[-2:]  # pre-padding + unpadded conv == padding=k//2


def test_block_without_expansion_pads_its_input_with_zeros():
    torch.manual_seed(0)
    block = randomize_bn_(StaticMBConv(8, 16, 3, 1, expand=1)).eval()
    assert block.expand_conv is None and not block.shortcut
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        assert torch.allclose(block(x), literal_block(block, x), atol=1e-5)


def test_non_linear_block_does_not_pad_once():
    """The pad-once form differs from a non-linear block on the border ring only."""
    torch.manual_seed(1)
    block = randomize_bn_(StaticMBConv(8, 8, 3, 1, expand=3, linear=False), seed=4).eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        err = (block(x) - literal_block(block, x)).abs()
    assert err[..., 1:-1, 1:-1].max() < 1e-5
    assert err[..., 0, :].max() > 1e-3


def copy_into_torchvision(block: StaticMBConv) -> InvertedResidual:
    """torchvision's block with ``block``'s weights and BN statistics (same registration order)."""
    ref = InvertedResidual(block.in_channels, block.out_channels, block.stride, block.expand)
    ours, theirs = block.state_dict(), ref.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    ref.load_state_dict(dict(zip(theirs, ours.values(), strict=True)))
    return ref


@pytest.mark.parametrize("expand", [1, 6])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("cin", "cout"), [(8, 8), (8, 16)])
@pytest.mark.parametrize("size", [13, 16])
def test_non_linear_block_is_torchvisions_inverted_residual(expand, stride, cin, cout, size):
    torch.manual_seed(10 * expand + stride + size)
    block = randomize_bn_(StaticMBConv(cin, cout, 3, stride, expand=expand), seed=size).eval()
    ref = copy_into_torchvision(block).eval()
    assert len(ref.conv) == (3 if expand == 1 else 4)
    assert ref.use_res_connect == block.shortcut
    x = torch.randn(2, cin, size, size)
    with torch.no_grad():
        expected, y = ref(x), block(x)
    assert y.shape == expected.shape
    assert (y - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_non_linear_block_trains_as_torchvisions_block():
    """Train mode too: same output (batch statistics) and the same running-statistic updates."""
    torch.manual_seed(0)
    block = randomize_bn_(StaticMBConv(8, 8, 3, 1, expand=6), seed=2).train()
    ref = copy_into_torchvision(block).train()
    x = torch.randn(4, 8, 12, 12)
    y, expected = block(x), ref(x)
    assert torch.allclose(y, expected, atol=1e-5, rtol=1e-5)
    pairs = zip(block.state_dict().items(), ref.state_dict().values(), strict=True)
    for (name, ours), theirs in pairs:  # num_batches_tracked: unused with a fixed momentum
        if not name.endswith("num_batches_tracked"):
            assert torch.allclose(ours, theirs, atol=1e-6), name


def test_partially_linear_block_blends_the_two_borders():
    """0 < alpha < 1: the depthwise conv sees act(v) = alpha v + (1 - alpha) relu6(v) padded
    with alpha * BN1(0), its identity branch padded as a linear block pads (BN1(0)) and its
    ReLU6 branch as the standard block does (0); continuous at both ends."""
    torch.manual_seed(3)
    x = torch.randn(2, 8, 9, 9)
    outs = {}
    for alpha in (0.0, 1e-7, 0.3, 1 - 1e-7, 1.0):
        block = randomize_bn_(StaticMBConv(8, 8, 5, 1, expand=3, linear=True, alpha=alpha),
                              seed=7).eval()
        torch.manual_seed(3)  # same weights for every alpha
        for m in block.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.normal_(m.weight, 0, 0.3)
        with torch.no_grad():
            outs[alpha] = block(x)
            if alpha == 0.3:
                c = block.expand_bn(torch.zeros(1, 24, 1, 1))  # BN1(0), per channel
                border = alpha * c
                a = act(block.expand_bn(F.conv2d(x, block.expand_conv.weight)), alpha)
                a = F.pad(a - border, (2, 2, 2, 2)) + border
                h = act(block.dw_bn(F.conv2d(a, block.dw_conv.weight, groups=24)), alpha)
                literal = block.project_bn(F.conv2d(h, block.project_conv.weight)) + x
                assert torch.allclose(outs[alpha], literal, atol=1e-5, rtol=1e-5)
    assert torch.allclose(outs[1e-7], outs[0.0], atol=1e-5)
    assert torch.allclose(outs[1 - 1e-7], outs[1.0], atol=1e-5)
    deep = StaticMBConv(8, 8, 5, 1, expand=3, linear=False)
    deep.load_state_dict(block.state_dict())
    with torch.no_grad():
        assert torch.allclose(deep.eval()(x), outs[0.0], atol=1e-6)


def test_activation_gate_blends_relu6_towards_identity():
    x = torch.linspace(-4, 10, 57)
    assert torch.equal(act(x, 0.0), F.relu6(x))
    assert torch.equal(act(x, 1.0), x)
    assert torch.allclose(act(x, 0.25), 0.25 * x + 0.75 * F.relu6(x))


def test_subnet_equals_supernet_for_random_archs(supernet, smoke):
    rng = random.Random(0)
    archs = [smoke.largest(), smoke.smallest()] + [smoke.sample(rng) for _ in range(8)]
    for arch in archs:
        net = supernet.subnet(arch)
        assert isinstance(net, StaticNet) and not net.training
        for res in (32, 37):
            x = torch.randn(2, 3, res, res)
            with torch.no_grad():
                assert torch.allclose(supernet(x, arch), net(x), atol=1e-6, rtol=1e-5)
        net_params = {p.data_ptr() for p in net.parameters()}
        assert not net_params & {p.data_ptr() for p in supernet.parameters()}


def test_subnet_honours_linear_alpha(supernet, smoke):
    arch = Arch(tuple(tuple(BlockArch(5, 6, True) for _ in range(2)) for _ in range(2)), 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = {alpha: supernet(x, arch, linear_alpha=alpha) for alpha in (0.0, 0.5, 1.0)}
        for alpha, out in outs.items():
            assert torch.allclose(supernet.subnet(arch, linear_alpha=alpha)(x), out, atol=1e-6)
        deep = Arch(tuple(tuple(BlockArch(5, 6, False) for _ in s) for s in arch.stages), 32)
        assert torch.allclose(outs[0.0], supernet(x, deep), atol=1e-6)
    assert not torch.allclose(outs[0.5], outs[1.0])


def test_train_mode_slices_running_statistics_like_the_subnet(supernet, smoke):
    arch = smoke.sample(random.Random(5))
    big = copy.deepcopy(supernet).train()
    small = big.subnet(arch, linear_alpha=0.7)
    assert small.training
    x = torch.randn(4, 3, 36, 36)
    assert torch.allclose(big(x, arch, linear_alpha=0.7), small(x), atol=1e-5)
    # one train-mode step each: the subnet's running stats moved exactly as the supernet's slices
    with torch.no_grad():
        assert torch.allclose(big.subnet(arch, 0.7).eval()(x), small.eval()(x), atol=1e-5)
    block, static = big.stages[0][0], small.features[2]
    assert torch.allclose(block.dw_bn.running_mean[:static.hidden], static.dw_bn.running_mean)
    assert not torch.equal(block.dw_bn.running_mean, supernet.stages[0][0].dw_bn.running_mean)
    untouched = supernet.stages[0][0].dw_bn.running_mean[static.hidden:]
    assert torch.equal(block.dw_bn.running_mean[static.hidden:], untouched)


def test_elastic_kernel_is_the_centre_crop_and_expand_the_leading_channels():
    torch.manual_seed(0)
    block = ElasticMBConv(8, 8, 1, kernels=(3, 5, 7), expands=(3, 6)).eval()
    small = block.copy_to(StaticMBConv(8, 8, 3, 1, expand=3))
    assert torch.equal(small.dw_conv.weight, block.dw_conv.weight[:24, :, 2:5, 2:5])
    assert torch.equal(small.expand_conv.weight, block.expand_conv.weight[:24])
    assert torch.equal(small.project_conv.weight, block.project_conv.weight[:, :24])
    with pytest.raises(DwnasError, match="not among its choices"):
        block(torch.zeros(1, 8, 8, 8), kernel=9, expand=3)


def test_sort_channels_keeps_the_function_and_puts_important_channels_first(supernet, smoke):
    net = copy.deepcopy(supernet)
    arch = smoke.largest()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        before = net(x, arch)
        net.sort_channels()
        after = net(x, arch)
    assert torch.allclose(before, after, atol=1e-5)
    for blocks in net.stages:
        for block in blocks:
            importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(importance[:-1] >= importance[1:])
    assert not torch.equal(net.stages[0][0].expand_conv.weight, supernet.stages[0][0].expand_conv.weight)


def test_forward_refuses_an_arch_that_does_not_fit(supernet, smoke):
    big = smoke.largest()
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(DwnasError, match="arch has 1 stage"):
        supernet(x, Arch(big.stages[:1], 32))
    too_deep = Arch((big.stages[0] + big.stages[0][:1], big.stages[1]), 32)
    with pytest.raises(DwnasError, match=r"stages\[0\]: depth 3 not allowed"):
        supernet(x, too_deep)
    with pytest.raises(DwnasError, match=r"stages\[0\]: depth 0 not allowed"):
        supernet(x, Arch(((), big.stages[1]), 32))
    with pytest.raises(DwnasError, match="outside the search space"):
        supernet.subnet(Arch(((BlockArch(7, 3, False),), big.stages[1]), 32))


def test_layers_say_their_config_and_rebuild_from_it(supernet, smoke):
    net = supernet.subnet(smoke.sample(random.Random(2)))
    clone = StaticNet.from_config(net.config())
    clone.load_state_dict(net.state_dict())
    clone.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clone(x), net(x))
    # smoke.yaml asks for 12 channels; make_divisible(12) = 16, as torchvision rounds it
    assert supernet.stages[0][0].config() == {
        "type": "ElasticMBConv", "in_channels": 8, "out_channels": 16, "stride": 2,
        "kernels": [3, 5], "expands": [3, 6]}
    assert Arch.from_json(net.arch_json) == Arch.from_json(net.config()["arch"])
