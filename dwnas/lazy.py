"""Lazy re-exports: a package names its API once while the modules behind it (which import torch)
load on first use, so that ``dwnas --help`` and the workflow's imports stay fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]]
                 ) -> tuple[list[str], Callable[[str], object]]:
    """``(__all__, __getattr__)`` for ``package``: ``modules`` maps a module path to the names it
    provides; a name's module is imported the first time the name is looked up."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name in home:
            return getattr(importlib.import_module(home[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(home), __getattr__
