"""``dwnas data prepare``: turn an ILSVRC2012-layout tree into verified manifests.

Input: ``RAW/train/<wnid>/*`` and ``RAW/val/`` as ``val/<wnid>/*`` folders, or flat ``val/*`` with
``LOC_val_solution.csv`` or ``ILSVRC2012_validation_ground_truth.txt`` + ``meta.mat`` (see
:mod:`dwnas.data.labels` for where those are searched). Hidden entries (names starting with ``.``)
are ignored everywhere; every other entry must be what the layout says it is.

Output (one directory, written atomically): ``train.csv`` and ``val.csv`` (``path,label,wnid``,
paths relative to the root), ``classes.json`` (``[{index, wnid, name}]``, labels 0..N-1 in sorted
wnid order), ``summary.json``, and with ``pack_size`` a ``packed/`` copy (:mod:`dwnas.data.pack`).

Every problem with the input is a :class:`DwnasError` naming the offending paths, raised before
anything is written, so a failed run leaves no output directory.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dwnas.data import labels as L
from dwnas.errors import DwnasError

SUBSETS = ("imagenet", "imagenet100", "all")
IMAGENET_CLASSES = 1000
IMAGENET100_FILE = "imagenet100_classes.txt"
IMAGENET100_SHA256 = "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"
STANDARD_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})$")
SHOWN = 10  # offending paths shown in one message


def _listing(items, limit: int = SHOWN) -> str:
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _fail(problem: str, items) -> DwnasError:
    items = list(items)
    return DwnasError(f"{problem} ({len(items)}): {_listing(items)}")


def default_classes_file() -> Path:
    """params/imagenet100_classes.txt of the repository the package is installed from."""
    import dwnas

    return Path(dwnas.__file__).resolve().parents[1] / "params" / IMAGENET100_FILE


def read_imagenet100(path: Path | None = None) -> list[str]:
    """The CMC ImageNet-100 wnids, after checking the file's sha256."""
    path = Path(path) if path is not None else default_classes_file()
    if not path.is_file():
        raise DwnasError(f"ImageNet-100 class list {path} not found (pass --classes-file)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != IMAGENET100_SHA256:
        raise DwnasError(
            f"{path}: sha256 {digest} differs from the CMC ImageNet-100 list ({IMAGENET100_SHA256})"
        )
    wnids = path.read_text().split()
    bad = [w for w in wnids if not L.WNID_RE.match(w)]
    if bad or len(set(wnids)) != 100:
        raise DwnasError(f"{path}: expected 100 distinct wnids")
    return sorted(wnids)


def _visible(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _class_folders(split_dir: Path) -> dict[str, Path]:
    """wnid -> folder for every entry of a split directory, which must all be wnid folders."""
    entries = _visible(split_dir)
    bad = [Path(e.path) for e in entries if not (e.is_dir() and L.WNID_RE.match(e.name))]
    if bad:
        raise _fail(f"not a wnid class folder (expected n + 8 digits) in {split_dir}", bad)
    return {e.name: Path(e.path) for e in entries}


def _folder_images(folders: dict[str, Path], wnids: list[str], split: str) -> dict[str, list[str]]:
    """File names of each class folder; empty folders and sub-folders are errors."""
    from dwnas.progress import progress

    out: dict[str, list[str]] = {}
    empty, nested = [], []
    for wnid in progress(wnids, desc=f"scan {split}"):
        entries = _visible(folders[wnid])
        nested += [Path(e.path) for e in entries if not e.is_file()]
        out[wnid] = [e.name for e in entries if e.is_file()]
        if not out[wnid]:
            empty.append(folders[wnid])
    if nested:
        raise _fail("not a file inside a class folder", nested)
    if empty:
        raise _fail("empty class folder", empty)
    return out


@dataclass
class ClassInfo:
    """What the label files say about the classes: the reference list and names, when found."""

    reference: list[str] | None = None  # the 1000 ILSVRC2012 wnids
    reference_source: Path | None = None
    names: dict[str, str] = field(default_factory=dict)
    meta: list[L.Synset] | None = None
    meta_path: Path | None = None


def _class_info(dirs: list[Path]) -> ClassInfo:
    info = ClassInfo()
    meta_path = L.find(L.META_MAT, dirs)
    if meta_path is not None:
        info.meta, info.meta_path = L.read_meta_mat(meta_path), meta_path
        info.reference = sorted(s.wnid for s in info.meta)
        info.reference_source = meta_path
        info.names = {s.wnid: s.words for s in info.meta}
    mapping_path = L.find(L.KAGGLE_SYNSETS, dirs)
    if mapping_path is not None:
        mapping = L.read_synset_mapping(mapping_path)
        for wnid, words in mapping.items():
            info.names.setdefault(wnid, words)
        if info.reference is None:
            info.reference, info.reference_source = sorted(mapping), mapping_path
    return info


def _select_classes(
    subset: str, train: dict[str, Path], train_dir: Path, info: ClassInfo, classes_file: Path | None
) -> list[str]:
    present = set(train)
    if subset == "all":
        if not present:
            raise DwnasError(f"{train_dir}: no class folders")
        return sorted(present)
    if subset == "imagenet100":
        wanted = read_imagenet100(classes_file)
        missing = [train_dir / w for w in wanted if w not in present]
        if missing:
            raise _fail("ImageNet-100 wnid absent from the tree", missing)
        return wanted
    if info.reference is not None:
        if len(info.reference) != IMAGENET_CLASSES:
            raise DwnasError(
                f"{info.reference_source}: lists {len(info.reference)} classes, expected "
                f"{IMAGENET_CLASSES}"
            )
        missing = [train_dir / w for w in info.reference if w not in present]
        if missing:
            raise _fail("ILSVRC2012 wnid absent from the tree", missing)
        extra = sorted(present - set(info.reference))
        if extra:
            raise _fail(
                f"class folder not among the classes of {info.reference_source}",
                [train_dir / w for w in extra],
            )
        return list(info.reference)
    if len(present) != IMAGENET_CLASSES:
        raise DwnasError(
            f"{train_dir}: --subset imagenet needs exactly {IMAGENET_CLASSES} wnid folders, found "
            f"{len(present)} (use --subset all for another set of classes)"
        )
    return sorted(present)


@dataclass
class ValLabels:
    images: dict[str, list[str]]  # wnid -> paths relative to val/, for the selected classes
    layout: str
    label_file: Path | None
    excluded: int  # val images of classes outside the subset


def _val_from_folders(val_dir: Path, selected: list[str], train: dict[str, Path]) -> ValLabels:
    folders = _class_folders(val_dir)
    unknown = [folders[w] for w in folders if w not in train]
    if unknown:
        raise _fail("val class folder with no train/ folder of the same wnid", unknown)
    missing = [val_dir / w for w in selected if w not in folders]
    if missing:
        raise _fail("wnid of the subset absent from val/", missing)
    names = _folder_images(folders, selected, "val")
    chosen = set(selected)
    excluded = sum(
        sum(1 for e in _visible(folders[w]) if e.is_file()) for w in folders if w not in chosen
    )
    images = {w: [f"{w}/{n}" for n in names[w]] for w in selected}
    return ValLabels(images, "folders", None, excluded)


def _match_labels(
    val_dir: Path, files: list[str], stem_wnid: dict[str, str], label_file: Path
) -> dict[str, str]:
    """file name -> wnid, checking both directions: every image labelled, every label an image."""
    stems: dict[str, str] = {}
    clash = []
    for name in files:
        stem = name.rsplit(".", 1)[0]
        if stem in stems:
            clash.append(val_dir / name)
        stems[stem] = name
    if clash:
        raise _fail("two val images with the same name but different extensions", clash)
    unlabelled = [val_dir / stems[s] for s in sorted(stems) if s not in stem_wnid]
    if unlabelled:
        raise _fail(f"val image with no label in {label_file}", unlabelled)
    missing = [val_dir / f"{s}.JPEG" for s in sorted(stem_wnid) if s not in stems]
    if missing:
        raise _fail(f"{label_file} labels a val image that is not there", missing)
    return {stems[s]: w for s, w in stem_wnid.items()}


def _ground_truth_by_name(files: list[str], ids: list[int], label_file: Path) -> dict[str, int]:
    """Map val file stems to lines of the ground-truth file (1-based ids, sorted file order)."""
    stems = [f.rsplit(".", 1)[0] for f in files]
    numbers = [STANDARD_VAL_NAME.match(s) for s in stems]
    if all(numbers):
        # Standard names: line i belongs to ILSVRC2012_val_<i>, whatever else is missing.
        return {f"ILSVRC2012_val_{i:08d}": class_id for i, class_id in enumerate(ids, 1)}
    if len(ids) != len(files):
        raise DwnasError(
            f"{label_file} has {len(ids)} labels but val/ holds {len(files)} images "
            "(labels follow sorted file-name order)"
        )
    return dict(zip(sorted(stems), ids, strict=True))


def _val_from_label_file(
    root: Path,
    val_dir: Path,
    files: list[str],
    selected: list[str],
    train: dict[str, Path],
    dirs: list[Path],
    info: ClassInfo,
) -> ValLabels:
    csv_path = L.find(L.KAGGLE_CSV, dirs)
    gt_path = L.find(L.GROUND_TRUTH, dirs)
    if csv_path is not None:
        stem_wnid = L.read_kaggle_csv(csv_path)
        label_file, layout = csv_path, "flat+LOC_val_solution.csv"
    elif gt_path is not None:
        if info.meta is None:
            raise DwnasError(
                f"{gt_path} needs the devkit's {L.describe_search(L.META_MAT, dirs)} to map "
                "class ids to wnids"
            )
        by_id = {s.ilsvrc_id: s.wnid for s in info.meta}
        ids = L.read_ground_truth(gt_path)
        unknown = sorted({i for i in ids if i not in by_id})
        if unknown:
            raise _fail(
                f"{gt_path}: class id not among the leaf synsets of {info.meta_path}", unknown
            )
        stem_wnid = {s: by_id[i] for s, i in _ground_truth_by_name(files, ids, gt_path).items()}
        label_file, layout = gt_path, "flat+ILSVRC2012_validation_ground_truth.txt"
    else:
        raise DwnasError(
            f"{val_dir} holds image files but no label file was found: "
            f"{L.describe_search(L.KAGGLE_CSV + ' or ' + L.GROUND_TRUTH, dirs)}"
        )
    strangers = sorted({w for w in stem_wnid.values() if w not in train})
    if strangers:
        raise _fail(
            f"{label_file}: wnid not among the class folders of {root / 'train'}", strangers
        )
    by_file = _match_labels(val_dir, files, stem_wnid, label_file)
    chosen = set(selected)
    images: dict[str, list[str]] = {w: [] for w in selected}
    for name in sorted(by_file):
        if by_file[name] in chosen:
            images[by_file[name]].append(name)
    missing = [w for w in selected if not images[w]]
    if missing:
        raise _fail(f"wnid of the subset with no val image in {label_file}", missing)
    excluded = sum(1 for w in by_file.values() if w not in chosen)
    return ValLabels(images, layout, label_file, excluded)


def _val_labels(root, val_dir, selected, train, dirs, info) -> ValLabels:
    entries = _visible(val_dir)
    if not entries:
        raise DwnasError(f"{val_dir} is empty")
    folders = [Path(e.path) for e in entries if e.is_dir()]
    files = [e.name for e in entries if e.is_file()]
    if folders and files:
        raise DwnasError(
            f"{val_dir} mixes class folders ({_listing(folders, 3)}) and files "
            f"({_listing([val_dir / f for f in files], 3)}); use one layout"
        )
    if folders:
        return _val_from_folders(val_dir, selected, train)
    return _val_from_label_file(root, val_dir, files, selected, train, dirs, info)


@dataclass
class Item:
    split: str
    path: str  # relative to the root, POSIX separators
    wnid: str
    label: int


def _write_manifest(path: Path, items: list[Item]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "label", "wnid"])
        for item in items:
            writer.writerow([item.path, item.label, item.wnid])


def _per_class_range(items: list[Item], wnids: list[str]) -> dict[str, int]:
    counts = Counter(i.wnid for i in items)
    values = [counts.get(w, 0) for w in wnids]
    return {"min": min(values), "max": max(values)}


def recorded_root(root: Path, out: str | os.PathLike) -> str:
    """How summary.json names the image root: relative to the prepared directory when the images
    sit beside it (the embedded dataset, ``results/<name>/data/synth``), so the results folder can
    move; the absolute path of a dataset stored elsewhere (ImageNet). Read by
    :func:`dwnas.data.manifest.dataset_root`."""
    out = Path(out).absolute()
    if root.is_relative_to(out.parent):
        return os.path.relpath(root, out)
    return str(root)


def prepare(
    root: str | os.PathLike,
    subset: str,
    out: str | os.PathLike,
    on_corrupt: str = "fail",
    on_duplicate: str = "fail",
    classes_file: str | os.PathLike | None = None,
    devkit: str | os.PathLike | None = None,
    workers: int | None = None,
    pack_size: int | None = None,
) -> dict:
    """Check ``root`` and write the prepared directory ``out``; return its summary."""
    from dwnas.data.verify import check_images, default_workers
    from dwnas.io import atomic_dir, write_json

    if subset not in SUBSETS:
        raise DwnasError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if on_corrupt not in ("fail", "skip") or on_duplicate not in ("fail", "skip"):
        raise DwnasError("--on-corrupt and --on-duplicate take 'fail' or 'skip'")
    if pack_size is not None and pack_size < 8:
        raise DwnasError(f"--pack-size must be >= 8 (got {pack_size})")
    root = Path(root).absolute()
    if not root.is_dir():
        raise DwnasError(f"dataset root {root} does not exist or is not a directory")
    train_dir, val_dir = root / "train", root / "val"
    for split_dir in (train_dir, val_dir):
        if not split_dir.is_dir():
            raise DwnasError(
                f"{split_dir} not found: expected {root}/train/<wnid>/ and {root}/val/"
            )
    dirs = L.search_dirs(root, Path(devkit).absolute() if devkit is not None else None)
    info = _class_info(dirs)
    classes_file = Path(classes_file) if classes_file is not None else None

    train = _class_folders(train_dir)
    selected = _select_classes(subset, train, train_dir, info, classes_file)
    train_images = _folder_images(train, selected, "train")
    val = _val_labels(root, val_dir, selected, train, dirs, info)
    label_of = {w: i for i, w in enumerate(selected)}

    items = [
        Item("train", f"train/{w}/{name}", w, label_of[w])
        for w in selected
        for name in train_images[w]
    ] + [Item("val", f"val/{rel}", w, label_of[w]) for w in selected for rel in val.images[w]]

    workers = workers or default_workers()
    start = time.perf_counter()
    checked = check_images([str(root / i.path) for i in items], workers=workers)
    verify_seconds = time.perf_counter() - start

    bad = [(item, c) for item, c in zip(items, checked, strict=True) if c.problem]
    if bad and on_corrupt == "fail":
        raise _fail(
            "bad image file (pass --on-corrupt skip to leave them out)",
            [f"{root / item.path}: {c.problem}" for item, c in bad],
        )
    skipped = [{"path": item.path, "reason": c.problem, "kind": c.kind} for item, c in bad]

    train_hash: dict[str, str] = {}
    for item, c in zip(items, checked, strict=True):
        if item.split == "train" and not c.problem:
            train_hash.setdefault(c.sha1, item.path)
    dupes = [
        (item, train_hash[c.sha1])
        for item, c in zip(items, checked, strict=True)
        if item.split == "val" and not c.problem and c.sha1 in train_hash
    ]
    if dupes and on_duplicate == "fail":
        raise _fail(
            "same image in train and val (identical bytes; pass --on-duplicate skip to drop the "
            "val copy)",
            [f"{root / v.path} = {root / t}" for v, t in dupes],
        )
    skipped += [
        {"path": v.path, "reason": f"identical to {t}", "kind": "duplicate"} for v, t in dupes
    ]
    dropped = {s["path"] for s in skipped}
    kept = [i for i in items if i.path not in dropped]
    by_split = {s: [i for i in kept if i.split == s] for s in ("train", "val")}
    for split, split_items in by_split.items():
        present = {i.wnid for i in split_items}
        emptied = [root / split / w for w in selected if w not in present]
        if emptied:
            raise _fail(
                f"class left with no usable {split} image after skipping bad files", emptied
            )

    kinds = Counter(s["kind"] for s in skipped)
    summary = {
        "root": recorded_root(root, out),
        "subset": subset,
        "num_classes": len(selected),
        "label_order": "sorted wnid",
        "counts": {s: len(v) for s, v in by_split.items()},
        "images_per_class": {s: _per_class_range(v, selected) for s, v in by_split.items()},
        "val_layout": val.layout,
        "label_file": str(val.label_file) if val.label_file else None,
        "class_list_source": str(info.reference_source)
        if subset == "imagenet" and info.reference_source
        else None,
        "classes_file": str(classes_file or default_classes_file())
        if subset == "imagenet100"
        else None,
        "val_excluded_other_classes": val.excluded,
        "on_corrupt": on_corrupt,
        "on_duplicate": on_duplicate,
        "skipped": skipped,
        "skipped_counts": {
            "total": len(skipped),
            "corrupt": kinds.get("corrupt", 0),
            "not_image": kinds.get("not_image", 0),
            "unreadable": kinds.get("unreadable", 0),
            "duplicate": kinds.get("duplicate", 0),
        },
        "verify": {
            "files": len(items),
            "workers": workers,
            "seconds": round(verify_seconds, 3),
            "files_per_s": round(len(items) / max(verify_seconds, 1e-9), 1),
        },
        "packed": None,
    }
    with atomic_dir(out) as tmp:
        for split, split_items in by_split.items():
            _write_manifest(tmp / f"{split}.csv", split_items)
        write_json(
            tmp / "classes.json",
            [{"index": i, "wnid": w, "name": info.names.get(w)} for i, w in enumerate(selected)],
        )
        if pack_size is not None:
            from dwnas.data.pack import write_packed

            summary["packed"] = write_packed(tmp, root, pack_size, workers=workers)
        write_json(tmp / "summary.json", summary)
    return summary
