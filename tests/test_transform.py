"""Deep-to-shallow transform: exactness (property-based), the border trap, deploy forms, export."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwnas.errors import DwnasError
from dwnas.nn.deploy import DeployMBConv, MergedConv
from dwnas.nn.static import StaticMBConv, build_static
from dwnas.nn.supernet import Supernet
from dwnas.space import Arch, BlockArch, Space
from dwnas.transform import (
    export_onnx,
    export_program,
    fold_deep,
    merge_block,
    merged_kernel_bias,
    randomize_bn_,
    transform,
    verify,
    verify_file,
    verify_transform,
)
from dwnas.transform.fuse import deploy_block, folded_branches

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5


def space_of(name: str) -> Space:
    return Space.from_params(yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["space"])


SMOKE = space_of("smoke")
_SUPERNET: list[Supernet] = []


def smoke_supernet() -> Supernet:
    if not _SUPERNET:
        torch.manual_seed(0)
        _SUPERNET.append(randomize_bn_(Supernet(SMOKE, num_classes=6), seed=3).eval())
    return _SUPERNET[0]


@st.composite
def archs(draw, space: Space) -> Arch:
    stages = []
    for stage in space.stages:
        depth = draw(st.sampled_from(stage.depths))
        stages.append(tuple(
            BlockArch(draw(st.sampled_from(stage.kernels)), draw(st.sampled_from(stage.expands)),
                      draw(st.sampled_from(space.linear)))
            for _ in range(depth)))
    return Arch(tuple(stages), draw(st.sampled_from(space.resolutions())))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=archs(SMOKE), seed=st.integers(0, 2**16), odd=st.sampled_from([17, 33, 35, 39]))
def test_transform_is_exact_for_random_archs(arch, seed, odd):
    """>= 100 archs, random BN statistics, even and odd resolutions (stride 2 on odd maps),
    shortcuts, border pixels (feature maps compared before pooling) and the subnet extraction."""
    supernet = smoke_supernet()
    deep = supernet.subnet(arch)
    resolutions = (arch.resolution, odd)
    x = torch.randn(2, 3, odd, odd, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert torch.allclose(supernet(x, arch), deep(x), atol=1e-6, rtol=1e-5)
    report = verify_transform(deep, resolutions, batch=2, seed=seed)
    assert report.max_rel_err <= TOLERANCE, report.to_dict()
    folded = verify_transform(deep, resolutions, batch=2, seed=seed, transform_fn=fold_deep)
    assert folded.max_rel_err <= TOLERANCE, folded.to_dict()
    shallow = transform(deep)
    merged = sum(isinstance(m, MergedConv) for m in shallow.features)
    assert merged == arch.num_linear
    assert len(shallow.features) == 3 + len(arch.blocks)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize(("cin", "cout"), [(8, 8), (8, 12)])
def test_linear_block_is_one_conv_border_included(stride, kernel, cin, cout):
    torch.manual_seed(kernel * 10 + stride)
    block = randomize_bn_(StaticMBConv(cin, cout, kernel, stride, expand=4, linear=True), 2).eval()
    conv = merge_block(block)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((kernel,) * 2, (stride,) * 2,
                                                           (kernel // 2,) * 2)
    for size in (9, 12, 15):
        x = torch.randn(2, cin, size, size)
        with torch.no_grad():
            ref, out = block(x), conv(x)
        assert ref.shape == out.shape
        assert (ref - out).abs().max() <= TOLERANCE * ref.abs().max()


def test_the_border_trap_is_what_the_padding_convention_avoids():
    """Zero-padding the expanded map (the standard MBConv, which non-linear blocks are) would
    break a linear block's merge at the border only: linear blocks pad with BN1(0) instead."""
    torch.manual_seed(0)
    block = randomize_bn_(StaticMBConv(8, 8, 3, 1, expand=4, linear=True), 4).eval()
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        h = block.expand_bn(F.conv2d(x, block.expand_conv.weight))
        h = block.dw_bn(F.conv2d(h, block.dw_conv.weight, padding=1, groups=block.hidden))
        standard = block.project_bn(F.conv2d(h, block.project_conv.weight)) + x
        merged = merge_block(block)(x)
    err = (standard - merged).abs()
    assert err[..., 1:-1, 1:-1].max() < 1e-4
    assert err[..., 0, :].max() > 1e-2  # the border is where the standard convention fails


def test_merged_kernel_formula_with_shortcut_and_without_expansion():
    torch.manual_seed(1)
    block = randomize_bn_(StaticMBConv(6, 6, 3, 1, expand=1, linear=True)).eval()
    kernel, bias = merged_kernel_bias(block)
    assert kernel.dtype == torch.float64 and kernel.shape == (6, 6, 3, 3)
    dw = block.dw_conv.weight.double()[:, 0] * (block.dw_bn.weight.double() / torch.sqrt(
        block.dw_bn.running_var.double() + block.dw_bn.eps)).view(-1, 1, 1)
    project = block.project_conv.weight.double()[:, :, 0, 0] * (block.project_bn.weight.double() / torch.sqrt(
        block.project_bn.running_var.double() + block.project_bn.eps)).view(-1, 1)
    expected = torch.einsum("om,mpq->ompq", project, dw)
    expected[range(6), range(6), 1, 1] += 1.0
    assert torch.allclose(kernel, expected)


@pytest.mark.parametrize("expand", [1, 3])
@pytest.mark.parametrize(("cout", "stride"), [(8, 1), (12, 2)])
def test_non_linear_deploy_form_is_plain_convs_and_relu6(expand, cout, stride):
    """conv -> ReLU6 -> depthwise conv -> ReLU6 -> conv, BN folded: no clamp with tensor bounds."""
    torch.manual_seed(2)
    deep = randomize_bn_(StaticMBConv(8, cout, 5, stride, expand=expand, linear=False), 5).eval()
    deployed = deploy_block(deep)
    assert isinstance(deployed, DeployMBConv) and not deployed.linear
    leaves = [m for m in deployed.modules() if not list(m.children())]
    assert {type(m) for m in leaves} == {torch.nn.Conv2d, torch.nn.ReLU6}
    assert len(leaves) == (5 if expand > 1 else 4)
    assert all(m.padding == (m.kernel_size[0] // 2,) * 2 for m in leaves if isinstance(m, torch.nn.Conv2d))
    (_, b1), (w2, b2), _ = folded_branches(deep)
    if expand > 1:  # no shift: the expansion keeps its folded bias
        assert torch.allclose(deployed.expand_conv.bias.double(), b1, atol=1e-6)
    assert torch.allclose(deployed.dw_conv.bias.double(), b2, atol=1e-6)
    for size in (11, 12):
        x = torch.randn(2, 8, size, size)
        with torch.no_grad():
            ref = deep(x)
            assert (ref - deployed(x)).abs().max() <= TOLERANCE * ref.abs().max()


def test_unmerged_linear_deploy_form_shifts_the_border_into_the_depthwise_bias():
    torch.manual_seed(3)
    block = randomize_bn_(StaticMBConv(8, 8, 5, 1, expand=3, linear=True), 6).eval()
    deployed = deploy_block(block)
    assert deployed.linear and isinstance(deployed.act1, torch.nn.Identity)
    assert isinstance(deployed.act2, torch.nn.Identity)
    (_, b1), (w2, b2), _ = folded_branches(block)
    assert torch.equal(deployed.expand_conv.bias, torch.zeros_like(deployed.expand_conv.bias))
    assert torch.allclose(deployed.dw_conv.bias.double(), b2 + b1 * w2.sum(dim=(1, 2)), atol=1e-6)
    x = torch.randn(2, 8, 11, 11)
    with torch.no_grad():
        ref = block(x)
        assert (ref - deployed(x)).abs().max() <= TOLERANCE * ref.abs().max()
        assert torch.allclose(deployed(x), merge_block(block)(x), atol=1e-5)


def test_partially_linearised_blocks_are_refused():
    block = StaticMBConv(8, 8, 3, 1, expand=3, linear=True, alpha=0.5).eval()
    with pytest.raises(DwnasError, match="alpha=0.5"):
        merge_block(block)
    with pytest.raises(DwnasError, match="not merged|keeps its activations"):
        merged_kernel_bias(StaticMBConv(8, 8, 3, 1, expand=3).eval())
    with pytest.raises(DwnasError, match="expected a StaticNet"):
        transform(block)


def test_transform_leaves_the_deep_network_untouched_and_verify_catches_a_wrong_one():
    deep = smoke_supernet().subnet(SMOKE.largest())
    before = copy.deepcopy(deep.state_dict())
    shallow = transform(deep)
    assert all(torch.equal(before[k], v) for k, v in deep.state_dict().items())
    with torch.no_grad():
        shallow.features[2].project_conv.bias.add_(1e-3)
    report = verify(deep, shallow, resolutions=(32, 33), batch=3)
    assert report.max_rel_err > 1e-5 and not report.within(1e-5)
    assert [r["resolution"] for r in report.per_resolution] == [32, 33]
    with torch.no_grad():
        shallow.features[3].project_conv.bias[0] = float("nan")
    broken = verify(deep, shallow, resolutions=(32,))
    assert math.isnan(broken.max_rel_err) and not broken.within(1.0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torch_export_and_onnx_files_round_trip(tmp_path):
    space = space_of("default")
    arch = Arch(tuple(tuple(BlockArch(k, 4, lin) for k, lin in zip((3, 5), (True, False), strict=True))
                      [:d] for d in (1, 2, 2, 2)), 56)
    torch.manual_seed(0)
    deep = randomize_bn_(build_static(space, arch, 7)).eval()
    shallow = transform(deep)
    export_program(shallow, tmp_path / "shallow.pt2", 56)
    program = verify_file(tmp_path / "shallow.pt2", shallow, resolutions=(56,), batch=3)
    assert program.max_rel_err <= TOLERANCE  # a program is specialised to its resolution
    export_onnx(shallow, tmp_path / "shallow.onnx", 56)
    report = verify_file(tmp_path / "shallow.onnx", shallow, resolutions=(56, 49), batch=3)
    assert report.max_rel_err <= TOLERANCE
    assert [r["resolution"] for r in report.per_resolution] == [56, 49]
    loaded = torch.export.load(str(tmp_path / "shallow.pt2")).module()  # no dwnas needed
    x = torch.randn(5, 3, 56, 56)  # any batch
    with torch.no_grad():
        assert torch.allclose(loaded(x), deep(x), atol=1e-5, rtol=1e-4)


def test_exported_program_names_no_path_of_this_machine(tmp_path):
    """A .pt2 is the same bytes on any machine: torch.export's source locations are dropped."""
    import zipfile

    import dwnas

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    export_program(model, tmp_path / "m.pt2", 16)
    package = str(Path(dwnas.__file__).parent.parent).encode()
    with zipfile.ZipFile(tmp_path / "m.pt2") as archive:
        for name in archive.namelist():
            data = archive.read(name)
            assert package not in data and b'"stack_trace": "File' not in data, name
    out = torch.export.load(tmp_path / "m.pt2").module()(torch.randn(1, 3, 16, 16))
    assert out.shape == (1, 4, 14, 14)
