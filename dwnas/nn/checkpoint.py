"""Supernet checkpoints: the weights plus everything needed to rebuild the network.

A checkpoint is a dict saved with ``torch.save`` (through a temporary name)::

    {"format": "dwnas-supernet", "version": 1,
     "space": <Space.to_dict()>, "fingerprint": <Space.fingerprint()>,
     "num_classes": int, "dropout": float, "state_dict": {...}, "extra": {...}}

``extra`` is the caller's (training step, optimiser state, metrics); it must hold only what
``torch.load(weights_only=True)`` accepts: tensors, numbers, strings, lists, dicts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError
from dwnas.space import Space

FORMAT = "dwnas-supernet"
VERSION = 1


def save_supernet(path: str | os.PathLike, supernet, extra: dict | None = None) -> None:
    """Write ``supernet`` (a :class:`~dwnas.nn.supernet.Supernet`) atomically to ``path``."""
    from dwnas.io import torch_save

    torch_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "space": supernet.space.to_dict(),
            "fingerprint": supernet.space.fingerprint(),
            "num_classes": supernet.num_classes,
            "dropout": supernet.dropout,
            "state_dict": supernet.state_dict(),
            "extra": dict(extra or {}),
        },
        path,
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint dict without building the network."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DwnasError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a torch archive
        raise DwnasError(f"{path}: not a dwnas supernet checkpoint (cannot be read by torch.load: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DwnasError(f"{path}: not a dwnas supernet checkpoint (no format={FORMAT!r} marker)")
    if ckpt.get("version") != VERSION:
        raise DwnasError(f"{path}: checkpoint version {ckpt.get('version')} is not supported "
                         f"(this dwnas reads version {VERSION})")
    missing = [k for k in ("space", "fingerprint", "num_classes", "state_dict") if k not in ckpt]
    if missing:
        raise DwnasError(f"{path}: damaged dwnas checkpoint, missing {missing}")
    space = Space.from_dict(ckpt["space"])
    if space.fingerprint() != ckpt["fingerprint"]:
        raise DwnasError(f"{path}: damaged dwnas checkpoint, its space hashes to "
                         f"{space.fingerprint()} but it records {ckpt['fingerprint']}")
    return ckpt


def checkpoint_images_seen(ckpt: dict) -> int:
    """Training images that passed through the supernet over its whole lineage (the training
    stage writes ``images_seen_total`` into the checkpoint's summary); 0 when not recorded."""
    summary = (ckpt.get("extra") or {}).get("summary") or {}
    return int(summary.get("images_seen_total", 0))


def load_supernet(path: str | os.PathLike, expect_space: Space | None = None):
    """Rebuild the supernet saved at ``path``; returns ``(supernet, checkpoint_dict)``.

    With ``expect_space``, a checkpoint of another space is refused, naming both fingerprints.
    The supernet is returned in eval mode on the CPU.
    """
    from dwnas.nn.supernet import Supernet

    ckpt = read_checkpoint(path)
    if expect_space is not None and expect_space.fingerprint() != ckpt["fingerprint"]:
        raise DwnasError(f"{path}: checkpoint of another search space (checkpoint fingerprint "
                         f"{ckpt['fingerprint']}, expected {expect_space.fingerprint()})")
    supernet = Supernet(Space.from_dict(ckpt["space"]), ckpt["num_classes"],
                        ckpt.get("dropout", 0.0))
    try:
        supernet.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DwnasError(f"{path}: weights do not fit the recorded space ({exc})") from exc
    return supernet.eval(), ckpt
