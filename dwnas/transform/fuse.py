"""Equivalent kernels and biases (RepVGG's ``get_equivalent_kernel_bias``), computed in float64.

REFERENCES.md 4.1-4.2. With each eval-mode BN folded into the conv before it, a linear MBConv
(both activations dropped) is the affine map of ONE dense kxk convolution, stride s, zero padding
k//2, over the block input:

    W[o, i, p, q] = sum_m W3[o, m] * W2[m, p, q] * W1[m, i]
    b[o]          = sum_m W3[o, m] * (b1[m] * sum_pq W2[m, p, q] + b2[m]) + b3[o]
    shortcut:     W[o, o, k//2, k//2] += 1

The ``b1 * sum W2`` term is exact at the border too because a linear block's depthwise conv sees
the expanded map padded with ``b1`` (its response to a zero input), see :mod:`dwnas.nn.functional`.
A non-linear block zero-pads it (torchvision's MobileNetV2 block) and deploys as plain convs and
ReLU6s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dwnas.errors import DwnasError
from dwnas.nn.deploy import ConvReLU6, DeployMBConv, MergedConv
from dwnas.nn.static import ConvBNReLU6, StaticMBConv


def fuse_conv_bn(weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BN into the (bias-free) conv weight before it: ``(W * g, beta - mean * g)``
    with ``g = gamma / sqrt(var + eps)``, in float64."""
    g = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return weight.double() * g.view(-1, *([1] * (weight.dim() - 1))), bn.bias.double() - bn.running_mean.double() * g


def folded_branches(block: StaticMBConv):
    """The block's three folded layers as float64 matrices: ``(W1, b1), (W2, b2), (W3, b3)`` with
    W1 (E, Cin), W2 (E, k, k), W3 (Cout, E). Without expansion layer W1 = I and b1 = 0."""
    if block.expand_conv is None:
        w1 = torch.eye(block.in_channels, dtype=torch.float64)
        b1 = torch.zeros(block.in_channels, dtype=torch.float64)
    else:
        w1, b1 = fuse_conv_bn(block.expand_conv.weight, block.expand_bn)
        w1 = w1[:, :, 0, 0]
    w2, b2 = fuse_conv_bn(block.dw_conv.weight, block.dw_bn)
    w3, b3 = fuse_conv_bn(block.project_conv.weight, block.project_bn)
    return (w1, b1), (w2[:, 0], b2), (w3[:, :, 0, 0], b3)


def _require_deployable(block: StaticMBConv) -> None:
    if block.linear and block.alpha != 1.0:
        raise DwnasError(f"block {block.config()}: a linear block with alpha={block.alpha} "
                         "(partially linearised) has no deploy form; set alpha to 1")


def merged_kernel_bias(block: StaticMBConv) -> tuple[Tensor, Tensor]:
    """The dense kxk kernel (Cout, Cin, k, k) and bias (Cout) equal to a linear block (float64)."""
    if not block.linear:
        raise DwnasError(f"block {block.config()} keeps its activations: it cannot be merged")
    _require_deployable(block)
    (w1, b1), (w2, b2), (w3, b3) = folded_branches(block)
    kernel = torch.einsum("om,mpq,mi->oipq", w3, w2, w1)
    bias = w3 @ (b1 * w2.sum(dim=(1, 2)) + b2) + b3
    if block.shortcut:
        centre = block.kernel // 2
        idx = torch.arange(block.out_channels)
        kernel[idx, idx, centre, centre] += 1.0
    return kernel, bias


def _conv(cls, weight: Tensor, bias: Tensor, stride: int, groups: int = 1,
          dtype: torch.dtype = torch.float32) -> nn.Conv2d:
    """A conv holding the float64 ``weight`` / ``bias`` in ``dtype``: the source network's, so a
    float64 copy of a network deploys without float32 rounding (verification of the algebra)."""
    out_ch, in_per_group, k, _ = weight.shape
    conv = cls(in_per_group * groups, out_ch, k, stride, k // 2, groups=groups, bias=True,
               dtype=dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.to(dtype))
        conv.bias.copy_(bias.to(dtype))
    return conv


def merge_block(block: StaticMBConv) -> MergedConv:
    """A linear block as one :class:`MergedConv` (stride and padding k//2 of the block)."""
    kernel, bias = merged_kernel_bias(block)
    return _conv(MergedConv, kernel, bias, block.stride, dtype=block.dw_conv.weight.dtype).eval()


def deploy_block(block: StaticMBConv) -> DeployMBConv:
    """A block with BN folded and its activations kept (deep form; linear blocks unmerged).

    A non-linear block becomes conv -> ReLU6 -> depthwise conv -> ReLU6 -> conv (torchvision's
    block with BN folded). A linear block's ``b1`` border is carried by shifting: expansion bias
    ``b1 - b1 = 0``, depthwise bias ``b2 + b1 * sum(W2)``; the zero padding of the shifted map then
    equals the ``b1`` padding exactly."""
    _require_deployable(block)
    dtype = block.dw_conv.weight.dtype
    (w1, b1), (w2, b2), (w3, b3) = folded_branches(block)
    if block.linear:
        border = b1
        act1, act2 = nn.Identity(), nn.Identity()
    else:
        border = torch.zeros_like(b1)
        act1, act2 = nn.ReLU6(inplace=True), nn.ReLU6(inplace=True)
    if block.expand_conv is None:
        expand_conv = None
        dw_bias = b2
    else:
        expand_conv = _conv(nn.Conv2d, w1[:, :, None, None], b1 - border, 1, dtype=dtype)
        dw_bias = b2 + border * w2.sum(dim=(1, 2))
    dw_conv = _conv(nn.Conv2d, w2[:, None], dw_bias, block.stride, groups=w2.shape[0], dtype=dtype)
    project_conv = _conv(nn.Conv2d, w3[:, :, None, None], b3, 1, dtype=dtype)
    return DeployMBConv(expand_conv, act1, dw_conv, act2, project_conv, block.shortcut,
                        block.linear).eval()


def deploy_conv_bn_relu6(layer: ConvBNReLU6) -> ConvReLU6:
    weight, bias = fuse_conv_bn(layer[0].weight, layer[1])
    return ConvReLU6(_conv(nn.Conv2d, weight, bias, layer.stride,
                           dtype=layer[0].weight.dtype)).eval()
