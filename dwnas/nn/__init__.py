"""Elastic ops, the weight-sharing supernet, static and deploy networks, counters.

The public API is documented in docs/space.md. Names are imported lazily, so that importing
``dwnas.nn.commands`` (for ``dwnas --help``) does not import torch.
"""

from dwnas.lazy import lazy_attributes

_EXPORTS = {
    "ConvBNReLU6": "dwnas.nn.static",
    "StaticMBConv": "dwnas.nn.static",
    "StaticNet": "dwnas.nn.static",
    "build_static": "dwnas.nn.static",
    "ElasticMBConv": "dwnas.nn.supernet",
    "Supernet": "dwnas.nn.supernet",
    "load_supernet": "dwnas.nn.checkpoint",
    "save_supernet": "dwnas.nn.checkpoint",
    "Counts": "dwnas.nn.counters",
    "count": "dwnas.nn.counters",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
