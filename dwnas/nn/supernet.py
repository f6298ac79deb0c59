"""The weight-sharing supernet, the Once-for-All way but without class-level switches.

Each :class:`ElasticMBConv` holds max-size weights and slices them per call: kernel = centre crop
of the largest kernel, expand ratio = leading hidden channels (see :meth:`ElasticMBConv.
sort_channels`), depth = the first d blocks of a stage. BN layers are per max channels and sliced,
in eval and in training alike (train-mode running-stat updates land in the slice's channels).

The architecture is an argument of ``forward``, so several subnets can run in one step and every
DDP worker runs the subnet it is given. Elastic depth leaves some blocks unused in a step: wrap in
DDP with ``find_unused_parameters=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwnas.errors import DwnasError
from dwnas.nn.functional import BNArgs, mbconv
from dwnas.nn.static import ConvBNReLU6, StaticMBConv, StaticNet, build_static, init_weights
from dwnas.space import Arch, Space


class ElasticMBConv(nn.Module):
    """An MBConv with elastic kernel and expand ratio, and an activation gate per call."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 kernels: tuple[int, ...], expands: tuple[int, ...]):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernels, self.expands = tuple(sorted(kernels)), tuple(sorted(expands))
        max_kernel, max_hidden = self.kernels[-1], in_channels * self.expands[-1]
        if self.expands[-1] > 1:
            self.expand_conv = nn.Conv2d(in_channels, max_hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(max_hidden)
        else:
            self.expand_conv, self.expand_bn = None, None
        self.dw_conv = nn.Conv2d(max_hidden, max_hidden, max_kernel, stride, max_kernel // 2,
                                 groups=max_hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(max_hidden)
        self.project_conv = nn.Conv2d(max_hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)

    @property
    def shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def config(self) -> dict:
        return {"type": "ElasticMBConv", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride,
                "kernels": list(self.kernels), "expands": list(self.expands)}

    def _weights(self, kernel: int, expand: int):
        """Sliced views of the max-size weights for one (kernel, expand) choice."""
        if kernel not in self.kernels or expand not in self.expands:
            raise DwnasError(f"block {self.config()}: kernel {kernel} / expand {expand} "
                             "not among its choices")
        hidden = self.in_channels * expand
        start = (self.kernels[-1] - kernel) // 2
        dw = self.dw_conv.weight[:hidden, :, start:start + kernel, start:start + kernel]
        if expand == 1:
            expand_weight, expand_bn = None, None
        else:
            expand_weight, expand_bn = self.expand_conv.weight[:hidden], BNArgs.of(self.expand_bn, hidden)
        return (expand_weight, expand_bn, dw, BNArgs.of(self.dw_bn, hidden),
                self.project_conv.weight[:, :hidden], BNArgs.of(self.project_bn))

    def forward(self, x: Tensor, kernel: int, expand: int, act_alpha: float = 0.0) -> Tensor:
        return mbconv(x, *self._weights(kernel, expand), stride=self.stride, act_alpha=act_alpha,
                      shortcut=self.shortcut, training=self.training)

    @torch.no_grad()
    def copy_to(self, block: StaticMBConv) -> StaticMBConv:
        """Copy this block's weights for ``block``'s (kernel, expand) into ``block``."""
        ew, ebn, dw, dbn, pw, pbn = self._weights(block.kernel, block.expand)
        if ew is not None:
            block.expand_conv.weight.copy_(ew)
            _copy_bn(block.expand_bn, ebn)
        block.dw_conv.weight.copy_(dw)
        _copy_bn(block.dw_bn, dbn)
        block.project_conv.weight.copy_(pw)
        _copy_bn(block.project_bn, pbn)
        return block

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder hidden channels by importance (L1 norm of each channel's projection weights,
        as Once-for-All), most important first, so that a smaller expand ratio keeps the most
        important channels. The max-size block computes the same function before and after.

        Optimiser state indexed by channel is not permuted: sort between training phases."""
        if self.expand_conv is None:
            return
        importance = self.project_conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.sort(importance, descending=True, stable=True).indices
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        self.dw_conv.weight.copy_(self.dw_conv.weight[order])
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        for bn in (self.expand_bn, self.dw_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])


def _copy_bn(dst: nn.BatchNorm2d, src: BNArgs) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)
    dst.running_mean.copy_(src.running_mean)
    dst.running_var.copy_(src.running_var)
    dst.eps, dst.momentum = src.eps, src.momentum


class Supernet(nn.Module):
    """All architectures of a :class:`Space` in one set of shared weights.

    ``supernet(x, arch, linear_alpha)`` runs ``arch`` on ``x`` (at whatever size ``x`` has);
    blocks marked linear use ``act_alpha = linear_alpha`` (1 = fully linear), others ReLU6.
    """

    def __init__(self, space: Space, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.space, self.num_classes, self.dropout = space, int(num_classes), float(dropout)
        fb = space.first_block
        self.stem = ConvBNReLU6(3, space.stem_out, 3, stride=2)
        self.first_block = StaticMBConv(space.stem_out, space.first_out, fb.kernel, 1, fb.expand)
        self.stages = nn.ModuleList(
            nn.ModuleList(
                ElasticMBConv(space.stage_in(s) if b == 0 else space.stage_out(s),
                              space.stage_out(s), st.stride if b == 0 else 1, st.kernels, st.expands)
                for b in range(max(st.depths))
            )
            for s, st in enumerate(space.stages)
        )
        self.head = ConvBNReLU6(space.stage_out(len(space.stages) - 1), space.head_out, 1)
        self.classifier = nn.Linear(space.head_out, self.num_classes)
        init_weights(self)

    def _check(self, arch: Arch) -> None:
        """Cheap structural check per call; :meth:`Space.validate` gives the full diagnosis."""
        if len(arch.stages) != len(self.stages) or any(
            not 1 <= len(stage) <= len(blocks)
            for stage, blocks in zip(arch.stages, self.stages, strict=True)
        ):
            self.space.validate(arch)
            raise DwnasError(f"arch depths {arch.depths} do not fit this supernet")

    def forward(self, x: Tensor, arch: Arch, linear_alpha: float = 1.0) -> Tensor:
        self._check(arch)
        x = self.first_block(self.stem(x))
        for blocks, stage in zip(self.stages, arch.stages, strict=True):
            for block, choice in zip(blocks, stage, strict=False):
                x = block(x, choice.kernel, choice.expand, linear_alpha if choice.linear else 0.0)
        x = torch.flatten(F.adaptive_avg_pool2d(self.head(x), 1), 1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)

    @torch.no_grad()
    def subnet(self, arch: Arch, linear_alpha: float = 1.0) -> StaticNet:
        """A plain static copy of ``arch`` (own weights, same train/eval mode as the supernet)."""
        net = build_static(self.space, arch, self.num_classes, self.dropout, linear_alpha)
        net.features[0].load_state_dict(self.stem.state_dict())
        net.features[1].load_state_dict(self.first_block.state_dict())
        i = 2
        for blocks, stage in zip(self.stages, arch.stages, strict=True):
            for block in blocks[:len(stage)]:
                block.copy_to(net.features[i])
                i += 1
        net.features[i].load_state_dict(self.head.state_dict())
        net.classifier.load_state_dict(self.classifier.state_dict())
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """:meth:`ElasticMBConv.sort_channels` on every searchable block."""
        for blocks in self.stages:
            for block in blocks:
                block.sort_channels()

    def config(self) -> dict:
        return {"space": self.space.to_dict(), "num_classes": self.num_classes,
                "dropout": self.dropout}
