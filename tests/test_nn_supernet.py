"""Supernet: weight sharing, subnet extraction, channel sorting, activation gate, padding convention."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

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
    unpadded (eval-mode BN)."""
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
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("size", [9, 10, 13])
def test_block_follows_the_literal_padding_convention_and_standard_shapes(stride, kernel, linear, size):
    torch.manual_seed(kernel + size)
    block = randomize_bn_(StaticMBConv(8, 8, kernel, stride, expand=3, linear=linear)).eval()
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
