"""Elastic ops, the weight-sharing supernet, static and deploy networks, counters.

The public API is documented in docs/space.md. Names are imported lazily, so that importing
``dwnas.nn.commands`` (for ``dwnas --help``) does not import torch.
"""

import importlib

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dwnas.nn' has no attribute {name!r}")
