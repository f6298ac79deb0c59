"""Network-level transforms of a static deep network into its deploy forms (eval mode).

* :func:`transform`: the shallow network: every linear block merged into one dense conv, every
  other block and the stem / head with BN folded.
* :func:`fold_deep`: the deep network as deployed: BN folded everywhere, no block merged. It
  differs from :func:`transform` only by the merge, which makes it the fair latency baseline.
* :func:`count_arch`: parameters, MACs and depth of an architecture in both forms.

Further merges (consecutive linear blocks, a merged conv with a neighbouring 1x1) were examined
and are not done: they are inexact at the border or grow the cost; see docs/transform.md.
"""

from __future__ import annotations

import copy

from torch import nn

from dwnas.errors import DwnasError
from dwnas.nn.static import ConvBNReLU6, StaticMBConv, StaticNet
from dwnas.transform.fuse import deploy_block, deploy_conv_bn_relu6, merge_block


def _deploy_layer(layer: nn.Module, merge_linear: bool) -> nn.Module:
    if isinstance(layer, ConvBNReLU6):
        return deploy_conv_bn_relu6(layer)
    if isinstance(layer, StaticMBConv):
        return merge_block(layer) if merge_linear and layer.linear else deploy_block(layer)
    raise DwnasError(f"transform: no deploy form for layer {type(layer).__name__}")


def to_deploy(net: StaticNet, merge_linear: bool) -> StaticNet:
    """The deploy form of a static network (a new module; ``net`` is left untouched)."""
    if not isinstance(net, StaticNet):
        raise DwnasError(f"transform: expected a StaticNet (Supernet.subnet), got {type(net).__name__}")
    features = [_deploy_layer(layer, merge_linear) for layer in net.features]
    classifier = copy.deepcopy(net.classifier)
    return StaticNet(features, classifier, net.dropout, net.arch_json).eval()


def transform(deep: StaticNet) -> StaticNet:
    """The equivalent shallow network: linear blocks merged, BN folded (eval mode)."""
    return to_deploy(deep, merge_linear=True)


def fold_deep(deep: StaticNet) -> StaticNet:
    """The deep network with BN folded and no block merged (eval mode)."""
    return to_deploy(deep, merge_linear=False)


def count_arch(space, arch, num_classes: int = 1000, resolution: int | None = None) -> dict:
    """Counts of ``arch`` deep (BN folded, every block kept) and shallow (linear blocks merged).

    Weights are freshly initialised: counts depend on shapes only."""
    from dwnas.nn.counters import count
    from dwnas.nn.static import build_static

    deep = build_static(space, arch, num_classes).eval()
    res = arch.resolution if resolution is None else resolution
    return {"deep": count(fold_deep(deep), res), "shallow": count(transform(deep), res)}
