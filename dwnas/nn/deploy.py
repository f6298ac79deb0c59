"""Deploy-form layers: batch norm folded into convolution biases, built by :mod:`dwnas.transform`.

They hold plain ``nn.Conv2d`` s with zero padding k//2, so TorchScript, ONNX and TensorRT see
ordinary convolutions and ``nn.ReLU6`` s. A non-linear block is torchvision's MobileNetV2 block with
BN folded. An unmerged linear block's border (its depthwise conv sees the expanded map padded with
``b1``) is carried by shifting: expansion bias ``0``, depthwise bias ``b2 + b1 * sum(W_dw)``; the
zero padding of the shifted map then equals the ``b1`` padding exactly.
"""

from __future__ import annotations

from torch import Tensor, nn


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
