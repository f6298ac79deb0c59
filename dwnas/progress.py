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
    """Iterate with feedback: a tqdm bar on a TTY, else plain lines with ETA: one at the start, one
    every ``every_s`` seconds, and one at the end (also when the caller leaves the loop early)."""
    stream = stream or sys.stderr
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if stream.isatty():
        yield from tqdm(iterable, total=total, desc=desc, file=stream, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    done = reported = 0

    def report(count: int, now: float) -> None:
        if count == 0:
            print(f"{desc}: 0/{total if total else '?'} started", file=stream, flush=True)
            return
        elapsed = now - start
        rate = count / max(elapsed, 1e-9)
        if total:
            eta = f"ETA {(total - count) / rate:.0f}s"
            text = f"{count}/{total} ({100 * count / total:.0f}%), {rate:.2f} it/s, {eta}"
        else:
            text = f"{count} done, {rate:.2f} it/s"
        print(f"{desc}: {text}, {elapsed:.0f}s elapsed", file=stream, flush=True)

    report(0, start)  # at once: the phase started and how much it has to do
    try:
        for done, item in enumerate(iterable, start=1):
            yield item
            now = time.monotonic()
            if now - last >= every_s:
                last, reported = now, done
                report(done, now)
    finally:  # the last line, also when the caller stops early (break) or fails
        if done != reported:
            report(done, time.monotonic())
