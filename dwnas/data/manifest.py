"""Reading a prepared directory: manifests (train.csv, val.csv), classes.json, summary.json.

Paths are held as one numpy bytes array rather than a list of str: DataLoader workers fork the
dataset, and a million Python strings would be copied page by page as their reference counts change.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwnas.errors import DwnasError
from dwnas.io import read_json

SPLITS = ("train", "val")
MANIFEST_COLUMNS = ["path", "label", "wnid"]


@dataclass(frozen=True)
class Manifest:
    """One split of a prepared directory: image paths relative to the root, and labels."""

    split: str
    paths: np.ndarray  # dtype S: UTF-8 bytes, relative to the dataset root
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.labels)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DwnasError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def read_manifest(prepared_dir: str | Path, split: str) -> Manifest:
    _check_split(split)
    path = Path(prepared_dir) / f"{split}.csv"
    if not path.is_file():
        raise DwnasError(f"{path}: manifest not found (run `dwnas data prepare` first)")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != MANIFEST_COLUMNS:
            raise DwnasError(f"{path}: expected header {','.join(MANIFEST_COLUMNS)}, got {header}")
        rows = list(reader)
    paths = (
        np.array([r[0].encode() for r in rows], dtype=np.bytes_)
        if rows
        else np.array([], dtype="S1")
    )
    labels = np.array([int(r[1]) for r in rows], dtype=np.int64)
    return Manifest(split, paths, labels)


def read_summary(prepared_dir: str | Path) -> dict:
    return read_json(Path(prepared_dir) / "summary.json")


def read_classes(prepared_dir: str | Path) -> list[dict]:
    return read_json(Path(prepared_dir) / "classes.json")


def num_classes(prepared_dir: str | Path) -> int:
    """Number of classes of a prepared directory (the length of its classes.json)."""
    return len(read_classes(prepared_dir))


def dataset_root(prepared_dir: str | Path, root: str | Path | None = None) -> Path:
    """The image root: ``root`` when given (data moved, e.g. to a node's local disk), else the
    root recorded in summary.json (absolute, or relative to the prepared directory)."""
    path = Path(root) if root is not None else Path(prepared_dir) / read_summary(prepared_dir)["root"]
    if not path.is_dir():
        raise DwnasError(f"dataset root {path} does not exist (pass root= to override)")
    return path
