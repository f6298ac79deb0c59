"""Lazy re-exports: a package names its API once while the modules behind it (which import torch)
load on first use, so that ``dwnas --help`` and the workflow's imports stay fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module
    path) the first time ``name`` is looked up."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
