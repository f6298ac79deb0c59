"""Deploy-form layers: batch norm folded into convolution biases, built by :mod:`dwnas.transform`.

They hold plain ``nn.Conv2d`` s with zero padding k//2, so TorchScript, ONNX and TensorRT see
ordinary convolutions. The padding convention of the training-form blocks (the depthwise conv sees
the expanded map padded with ``c = act(b1)``) is carried by shifting: the expansion bias becomes
``b1 - c``, ReLU6 becomes a per-channel clamp to ``[-c, 6 - c]`` and the depthwise bias gains
``c * sum(W_dw)``; the zero padding of the shifted map then equals the ``c`` padding exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ShiftedReLU6(nn.Module):
    """``relu6(x + shift) - shift`` per channel, written as ``clamp(x, -shift, 6 - shift)``, in place
    (it always follows a convolution)."""

    def __init__(self, shift: Tensor):
        super().__init__()
        shift = shift.detach().float().view(1, -1, 1, 1)
        self.register_buffer("low", -shift)
        self.register_buffer("high", 6.0 - shift)

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp_(x, self.low, self.high)  # in place: x is a conv's fresh output

    def config(self) -> dict:
        return {"type": "ShiftedReLU6", "channels": self.low.shape[1]}


class ConvReLU6(nn.Sequential):
    """Conv (with bias, zero padding k//2) -> ReLU6: a deployed ConvBNReLU6."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv, nn.ReLU6(inplace=True))

    def config(self) -> dict:
        conv = self[0]
        return {"type": "ConvReLU6", "in_channels": conv.in_channels,
                "out_channels": conv.out_channels, "kernel": conv.kernel_size[0],
                "stride": conv.stride[0]}


class MergedConv(nn.Conv2d):
    """One dense kxk convolution equal to a whole linear MBConv block, shortcut included."""

    def config(self) -> dict:
        return {"type": "MergedConv", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel": self.kernel_size[0],
                "stride": self.stride[0]}


class DeployMBConv(nn.Module):
    """An MBConv with batch norm folded and its activations kept (a non-merged block)."""

    def __init__(self, expand_conv: nn.Conv2d | None, act1: nn.Module, dw_conv: nn.Conv2d,
                 act2: nn.Module, project_conv: nn.Conv2d, shortcut: bool, linear: bool):
        super().__init__()
        self.expand_conv = expand_conv
        self.act1 = act1
        self.dw_conv = dw_conv
        self.act2 = act2
        self.project_conv = project_conv
        self.shortcut = bool(shortcut)
        self.linear = bool(linear)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.expand_conv is None else self.act1(self.expand_conv(x))
        y = self.project_conv(self.act2(self.dw_conv(h)))
        return y + x if self.shortcut else y

    def config(self) -> dict:
        dw = self.dw_conv
        first = dw if self.expand_conv is None else self.expand_conv
        return {"type": "DeployMBConv", "in_channels": first.in_channels,
                "out_channels": self.project_conv.out_channels, "kernel": dw.kernel_size[0],
                "stride": dw.stride[0], "hidden": dw.out_channels, "linear": self.linear,
                "shortcut": self.shortcut}
