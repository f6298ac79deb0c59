"""Elastic ops, the weight-sharing supernet, static and deploy networks, counters.

The public API is documented in docs/space.md. Names are imported lazily, so that importing
``dwnas.nn.commands`` (for ``dwnas --help``) does not import torch.
"""

from dwnas.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "dwnas.nn.static": ("ConvBNReLU6", "StaticMBConv", "StaticNet", "build_static"),
    "dwnas.nn.supernet": ("ElasticMBConv", "Supernet"),
    "dwnas.nn.checkpoint": ("load_supernet", "save_supernet"),
    "dwnas.nn.counters": ("Counts", "count"),
})
