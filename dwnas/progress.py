"""Progress feedback: a tqdm bar with ETA on a terminal, plain periodic lines elsewhere (CI, SLURM logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    every_s: float = 10.0,
    stream=None,
) -> Iterator[T]:
    """Iterate with feedback: a tqdm bar on a TTY, else a line every ``every_s`` seconds with ETA."""
    stream = stream or sys.stderr
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if stream.isatty():
        yield from tqdm(iterable, total=total, desc=desc, file=stream, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    for done, item in enumerate(iterable, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or (total is not None and done == total):
            last = now
            rate = done / max(now - start, 1e-9)
            if total:
                eta = (total - done) / rate if rate > 0 else float("inf")
                print(
                    f"{desc}: {done}/{total} ({100 * done / total:.0f}%), "
                    f"{rate:.2f} it/s, ETA {eta:.0f}s",
                    file=stream,
                    flush=True,
                )
            else:
                print(f"{desc}: {done} done, {rate:.2f} it/s", file=stream, flush=True)
