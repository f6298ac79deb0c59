"""ILSVRC2012 label files: where they are searched and how each is read.

Searched, in this order, in ``--devkit DIR`` (when given) and then under the raw root:
``RAW/``, ``RAW/devkit/``, ``RAW/devkit/data/``, ``RAW/ILSVRC2012_devkit_t12/data/``
(the last is where the official devkit tarball unpacks its ``data/`` folder).

* ``LOC_val_solution.csv`` (Kaggle): ``ImageId,PredictionString``; the first token of
  PredictionString is the image's wnid.
* ``ILSVRC2012_validation_ground_truth.txt`` (devkit): one 1-based ILSVRC2012_ID per line, line i
  for the i-th validation image in sorted file-name order; needs ``meta.mat`` to map ids to wnids.
* ``meta.mat`` (devkit): the ``synsets`` struct (ILSVRC2012_ID, WNID, words, num_children); the
  1000 leaf synsets (num_children == 0) are the classes. Also the source of class names.
* ``LOC_synset_mapping.txt`` (Kaggle): ``<wnid> <words>`` per line; class names and the class list.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from dwnas.errors import DwnasError

WNID_RE = re.compile(r"^n\d{8}$")
SEARCH_SUBDIRS = ("", "devkit", "devkit/data", "ILSVRC2012_devkit_t12/data")
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META_MAT = "meta.mat"


def search_dirs(root: Path, devkit: Path | None = None) -> list[Path]:
    dirs = [devkit] if devkit is not None else []
    return dirs + [root / sub if sub else root for sub in SEARCH_SUBDIRS]


def find(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def describe_search(name: str, dirs: list[Path]) -> str:
    return f"{name} (searched {', '.join(str(d) for d in dirs)})"


@dataclass(frozen=True)
class Synset:
    ilsvrc_id: int
    wnid: str
    words: str


def read_meta_mat(path: Path) -> list[Synset]:
    """The 1000 leaf synsets of the devkit's meta.mat, sorted by ILSVRC2012_ID."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DwnasError(
            f"{path}: reading meta.mat needs scipy (pip install scipy), or use the val/<wnid>/ "
            "or LOC_val_solution.csv layout"
        ) from exc
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DwnasError(
            f"{path}: not a readable devkit meta.mat with a 'synsets' struct ({exc})"
        ) from exc
    leaves = []
    for s in synsets.ravel():
        if int(s["num_children"]) == 0:
            leaves.append(Synset(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"])))
    if not leaves:
        raise DwnasError(f"{path}: no leaf synsets (num_children == 0) in 'synsets'")
    return sorted(leaves, key=lambda s: s.ilsvrc_id)


def read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt``: wnid -> words, in file order."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, words = line.strip().partition(" ")
        if not WNID_RE.match(wnid):
            raise DwnasError(f"{path}:{n}: expected '<wnid> <words>', got {line!r}")
        out[wnid] = words.strip()
    return out


def read_kaggle_csv(path: Path) -> dict[str, str]:
    """``LOC_val_solution.csv``: image id (file name without extension) -> wnid."""
    out: dict[str, str] = {}
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise DwnasError(f"{path}: expected header ImageId,PredictionString, got {header}")
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            tokens = row[1].split() if len(row) > 1 else []
            if not tokens:
                raise DwnasError(f"{path}:{n}: empty PredictionString for {row[0]!r}")
            if row[0] in out:
                raise DwnasError(f"{path}:{n}: image {row[0]!r} is listed twice")
            out[row[0]] = tokens[0]
    return out


def read_ground_truth(path: Path) -> list[int]:
    """``ILSVRC2012_validation_ground_truth.txt``: the 1-based class id of each image, in order."""
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.append(int(line))
        except ValueError as exc:
            raise DwnasError(f"{path}:{n}: expected an integer class id, got {line!r}") from exc
    return ids
