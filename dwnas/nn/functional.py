"""The one MBConv computation shared by the elastic supernet block and the static block.

Both call :func:`mbconv` with their own (sliced or plain) tensors, so a subnet equals the supernet
under the same architecture by construction.

Activation gate: ``act_alpha`` blends ReLU6 towards the identity, ``act(x) = alpha*x +
(1-alpha)*relu6(x)``: 0 is the deep block's ReLU6, 1 a linear block (both activations dropped).

Border (docs/transform.md, "The border"): a *non-linear* block (``act_alpha`` 0) is exactly
torchvision's MobileNetV2 ``InvertedResidual``: its depthwise convolution zero-pads the expanded
map. A *linear* block (``act_alpha`` 1) pads it by k//2 with ``c = BN1(0)`` per channel (the
expansion's response to a zero input, REFERENCES.md 4.3), exactly what padding the block *input*
once with zeros and running the expansion and depthwise convolutions unpadded gives, so that it
equals one dense kxk convolution over its zero-padded input, border pixels included. In between
(``0 < alpha < 1``, progressive linearisation only; such a block has no deploy form) the border is
``alpha * c``: ``act(v) = alpha * v + (1 - alpha) * relu6(v)`` is a blend of an identity branch,
padded as a linear block pads (``c``), and a ReLU6 branch, padded as the standard block pads (0);
the depthwise conv is linear, so it sees their blend, continuous in alpha.

A non-zero border is computed without materialising a padded map, with the identity
``dw(pad_c(a)) = dw(pad_0(a - c)) + c * sum(W_dw)``, so the expansion runs on the real pixels only
(MobileNetV2's MAC count; padding the input literally would add 11% MACs at 224 px) and train-mode
BN statistics are taken over real pixels, as in a standard MBConv.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class BNArgs(NamedTuple):
    """A batch norm's tensors (possibly slices of a larger one's) and settings."""

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor
    eps: float
    momentum: float

    @classmethod
    def of(cls, bn: torch.nn.BatchNorm2d, channels: int | None = None) -> BNArgs:
        """The leading ``channels`` of ``bn`` (all when None); slices are views, so train-mode
        running-stat updates land in ``bn``'s own buffers."""
        c = bn.num_features if channels is None else channels
        return cls(bn.weight[:c], bn.bias[:c], bn.running_mean[:c], bn.running_var[:c],
                   bn.eps, 0.1 if bn.momentum is None else bn.momentum)


def act(x: Tensor, alpha: float) -> Tensor:
    """ReLU6 blended towards the identity: alpha=0 ReLU6, alpha=1 identity."""
    if alpha >= 1.0:
        return x
    if alpha <= 0.0:
        return F.relu6(x)
    return torch.lerp(F.relu6(x), x, alpha)


def batch_norm(x: Tensor, bn: BNArgs, training: bool) -> Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        training, bn.momentum, bn.eps)


def bn_scale_shift(x: Tensor, bn: BNArgs, training: bool) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) with ``BN(x) = x * scale + shift``, as ``F.batch_norm`` would
    apply them: batch statistics (and a running-stat update) in training, running stats in eval.

    The shift is BN's response to a zero input, which a linear block's border needs."""
    if training:
        var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            bn.running_mean.mul_(1 - bn.momentum).add_(mean, alpha=bn.momentum)
            bn.running_var.mul_(1 - bn.momentum).add_(var * (n / max(n - 1, 1)), alpha=bn.momentum)
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    return scale, bn.bias - mean * scale


def _channel(v: Tensor) -> Tensor:
    return v.view(1, -1, 1, 1)


def mbconv(
    x: Tensor,
    expand_weight: Tensor | None,
    expand_bn: BNArgs | None,
    dw_weight: Tensor,
    dw_bn: BNArgs,
    project_weight: Tensor,
    project_bn: BNArgs,
    *,
    stride: int,
    act_alpha: float,
    shortcut: bool,
    training: bool,
) -> Tensor:
    """One MBConv block: [1x1 expand, BN, act] -> kxk depthwise, BN, act -> 1x1 project, BN
    [+ x]. ``expand_weight`` None means expand ratio 1 (no expansion layer, as MobileNetV2)."""
    pad = dw_weight.shape[-1] // 2
    groups = dw_weight.shape[0]
    if expand_weight is None:
        h = F.conv2d(x, dw_weight, None, stride, pad, groups=groups)
    elif act_alpha <= 0.0:  # the standard block: zero padding
        a = act(batch_norm(F.conv2d(x, expand_weight), expand_bn, training), 0.0)
        h = F.conv2d(a, dw_weight, None, stride, pad, groups=groups)
    else:  # padded with alpha * BN1(0): BN1(0) for a linear block
        u = F.conv2d(x, expand_weight)
        scale, shift = bn_scale_shift(u, expand_bn, training)
        a = act(torch.addcmul(_channel(shift), u, _channel(scale)), act_alpha)
        border = shift * min(act_alpha, 1.0)
        h = F.conv2d(a - _channel(border), dw_weight, border * dw_weight.sum(dim=(1, 2, 3)),
                     stride, pad, groups=groups)
    h = act(batch_norm(h, dw_bn, training), act_alpha)
    y = batch_norm(F.conv2d(h, project_weight), project_bn, training)
    return y + x if shortcut else y
