"""Parameters, multiply-accumulates and layer depth of any ``nn.Module``, by one forward pass.

The pass runs under a ``TorchDispatchMode`` that sees every ATen operator, so functional calls
(``F.conv2d`` in the supernet), TorchScript modules and baselines are all counted alike:

* ``params``: trainable parameters (``model.parameters()``, shared tensors once). BN's gamma and
  beta count, its running statistics (buffers) do not, as torchvision's figures.
* ``macs``: multiply-accumulates of convolutions (out elements x in-channels-per-group x kernel
  area) and matrix products (linear layers), per image at batch 1. Batch norm, activations,
  additions and pooling are not counted.
* ``depth``: weight layers (convolutions and matrix products) on the longest path from the input
  to the output. A residual shortcut does not add to it; a linear MBConv merged into one
  convolution counts 1 instead of 3. MobileNetV2: 53 (stem, 2 + 16 x 3 in the blocks, head, fc).
* ``weight_layers``: all weight layers executed (= ``depth`` for a chain with shortcuts only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int
    depth: int
    weight_layers: int
    resolution: int

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_macs(args, out) -> int:
    weight = args[1]
    transposed = len(args) > 6 and bool(args[6])
    if transposed:  # weight (in, out/groups, k...): every input element feeds out/groups x k taps
        return args[0].numel() * weight.shape[1] * math.prod(weight.shape[2:])
    return out.numel() * weight.shape[1] * math.prod(weight.shape[2:])


_CONV_OPS = {aten.convolution.default, aten._convolution.default, aten.conv1d.default,
             aten.conv2d.default, aten.conv3d.default}
_MATMUL_OPS = {
    aten.linear.default: lambda args, out: out.numel() * args[1].shape[1],
    aten.addmm.default: lambda args, out: out.numel() * args[1].shape[1],
    aten.mm.default: lambda args, out: out.numel() * args[0].shape[1],
    aten.bmm.default: lambda args, out: out.numel() * args[0].shape[-1],
    aten.baddbmm.default: lambda args, out: out.numel() * args[1].shape[-1],
    aten.matmul.default: lambda args, out: out.numel() * args[0].shape[-1],
}


class _CountingMode(TorchDispatchMode):
    """Accumulates MACs and propagates a per-tensor weight-layer depth through every op."""

    def __init__(self):
        super().__init__()
        self.macs = 0
        self.weight_layers = 0
        self.depth = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        is_conv = func in _CONV_OPS or packet in {aten.convolution, aten._convolution}
        macs_of = _MATMUL_OPS.get(func)
        level = max((self.depth.get(t, 0) for t in tree_flatten((args, kwargs))[0]
                     if isinstance(t, torch.Tensor)), default=0)
        if is_conv or macs_of is not None:
            first = out if isinstance(out, torch.Tensor) else tree_flatten(out)[0][0]
            self.macs += _conv_macs(args, first) if is_conv else macs_of(args, first)
            self.weight_layers += 1
            level += 1
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.depth[t] = max(level, self.depth.get(t, 0))
        return out


def count(model: nn.Module, resolution: int, in_channels: int = 3) -> Counts:
    """Count ``model`` on one ``in_channels x resolution x resolution`` image (run in eval mode,
    the mode is restored)."""
    was_training = model.training
    model.eval()
    mode = _CountingMode()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, resolution, resolution)
            with mode:
                out = model(x)
            depth = max((mode.depth.get(t, 0) for t in tree_flatten(out)[0]
                         if isinstance(t, torch.Tensor)), default=0)
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Counts(params=params, macs=mode.macs, depth=depth, weight_layers=mode.weight_layers,
                  resolution=int(resolution))
