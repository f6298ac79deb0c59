"""Check every image once, in parallel: readable, an image, fully decodable; and hash its bytes.

One read per file serves both the content hash (sha1, for the train/val duplicate check) and the
decode. ``Image.verify()`` catches broken headers (and PNG checksums); decoding catches truncated
or corrupt JPEG data. The decode is cheap because JPEG draft mode lets libjpeg decode at 1/2-1/8
scale (the entropy-coded data is still read to the end, so truncation is still detected).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

from dwnas.procs import worker_pool
from dwnas.progress import progress

DRAFT_SIZE = (64, 64)
# Files per task sent to a worker: large enough to amortise IPC, small enough to balance load.
MAX_CHUNK = 256
# Below this many files the pool's start-up costs more than it saves.
MIN_PARALLEL = 64


@dataclass(frozen=True)
class Checked:
    sha1: str | None
    problem: str | None  # None when the image is good
    kind: str | None  # "not_image", "corrupt" or "unreadable" when there is a problem


def check_image(path: str) -> Checked:
    """Hash and fully decode one image file; never raises."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return Checked(None, f"unreadable ({exc.strerror or exc})", "unreadable")
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", DRAFT_SIZE)
            im.load()
    except UnidentifiedImageError:
        return Checked(sha1, "not an image file", "not_image")
    except Image.DecompressionBombError as exc:
        return Checked(sha1, f"refused by Pillow ({exc})", "corrupt")
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        return Checked(sha1, f"corrupt or truncated image ({exc})", "corrupt")
    return Checked(sha1, None, None)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def check_images(
    paths: Sequence[str], workers: int | None = None, desc: str = "verify"
) -> list[Checked]:
    """:func:`check_image` over ``paths`` with a process pool and a progress bar; results in order."""
    workers = workers or default_workers()
    if workers == 1 or len(paths) < MIN_PARALLEL:
        return list(progress(map(check_image, paths), total=len(paths), desc=desc))
    chunk = max(1, min(MAX_CHUNK, len(paths) // (workers * 8)))
    with worker_pool(workers) as pool:
        results = pool.map(check_image, paths, chunksize=chunk)
        return list(progress(results, total=len(paths), desc=desc))
