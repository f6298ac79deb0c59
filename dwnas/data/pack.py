"""The packed copy: every image pre-resized into one uint8 array per split, read by memory map.

Decoding full-size JPEGs dominates a CPU data pipeline; a packed copy trades disk space for that.
Each image is resized so its shorter side is ``size`` px and its centre ``size x size`` square is
kept (the region the eval transform's centre crop uses anyway). ``packed/<split>.npy`` holds an
array (N, size, size, 3) in manifest row order; ``packed/meta.json`` records the size, counts and
the sha1 of the manifest each array was built from, so a stale pack is refused.

Disk cost: N x size^2 x 3 bytes (ImageNet train at 160 px: about 98 GB).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from dwnas.errors import DwnasError
from dwnas.procs import worker_pool

PACK_FORMAT = 1
CHUNK = 256


def file_sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def load_square(path: str, size: int) -> np.ndarray:
    """Decode ``path``, resize its shorter side to ``size`` and keep the centre square (uint8 HWC)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        if (w, h) != (size, size):
            im = im.resize((size, size), Image.BICUBIC, box=box)
        return np.asarray(im)


def _pack_chunk(task: tuple[str, int, list[str], int]) -> int:
    npy_path, start, paths, size = task
    array = np.load(npy_path, mmap_mode="r+")
    for offset, path in enumerate(paths):
        array[start + offset] = load_square(path, size)
    array.flush()
    del array
    return len(paths)


def _pack_split(npy_path: Path, paths: list[str], size: int, workers: int, desc: str) -> None:
    from dwnas.progress import progress

    array = np.lib.format.open_memmap(
        npy_path, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)
    )
    del array
    tasks = [(str(npy_path), s, paths[s : s + CHUNK], size) for s in range(0, len(paths), CHUNK)]
    if workers <= 1 or len(tasks) <= 1:
        for _ in progress(map(_pack_chunk, tasks), total=len(tasks), desc=desc):
            pass
        return
    with worker_pool(workers) as pool:
        for _ in progress(pool.map(_pack_chunk, tasks), total=len(tasks), desc=desc):
            pass


def write_packed(
    prepared_dir: str | os.PathLike, root: str | os.PathLike, size: int, workers: int | None = None
) -> dict:
    """Write ``prepared_dir/packed`` (atomically) from the manifests; return its meta."""
    from dwnas.data.manifest import SPLITS, read_manifest
    from dwnas.data.verify import default_workers
    from dwnas.io import atomic_dir, check_free_space, write_json

    if size < 8:
        raise DwnasError(f"pack size must be >= 8 px (got {size})")
    prepared_dir, root = Path(prepared_dir), Path(root)
    workers = workers or default_workers()
    meta = {
        "format": PACK_FORMAT,
        "size": size,
        "layout": "NHWC uint8",
        "resize": "shorter side to size, centre square",
        "splits": {},
    }
    images = sum(len(read_manifest(prepared_dir, split).paths) for split in SPLITS)
    check_free_space(prepared_dir / "packed", images * size * size * 3,
                     f"{images:,} packed images of {size} px")
    with atomic_dir(prepared_dir / "packed") as tmp:
        for split in SPLITS:
            manifest = read_manifest(prepared_dir, split)
            paths = [str(root / p.decode()) for p in manifest.paths]
            _pack_split(tmp / f"{split}.npy", paths, size, workers, f"pack {split}")
            meta["splits"][split] = {
                "file": f"{split}.npy",
                "count": len(paths),
                "manifest_sha1": file_sha1(prepared_dir / f"{split}.csv"),
                "bytes": len(paths) * size * size * 3,
            }
        write_json(tmp / "meta.json", meta)
    return meta


def read_packed_meta(
    packed_dir: str | os.PathLike, prepared_dir: str | os.PathLike, split: str
) -> dict:
    """The meta of one packed split, after checking it matches the prepared manifest."""
    from dwnas.io import read_json

    packed_dir, prepared_dir = Path(packed_dir), Path(prepared_dir)
    meta = read_json(packed_dir / "meta.json")
    entry = meta.get("splits", {}).get(split)
    if meta.get("format") != PACK_FORMAT or entry is None:
        raise DwnasError(
            f"{packed_dir}/meta.json: not a format-{PACK_FORMAT} pack with split {split!r}"
        )
    if entry["manifest_sha1"] != file_sha1(prepared_dir / f"{split}.csv"):
        raise DwnasError(
            f"{packed_dir}/{entry['file']} was built from another {split}.csv than "
            f"{prepared_dir / (split + '.csv')}; re-run `dwnas data pack`"
        )
    return {**entry, "size": meta["size"], "path": str(packed_dir / entry["file"])}
