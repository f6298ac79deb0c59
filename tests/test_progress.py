"""dwnas.progress: plain lines with ETA where there is no terminal (logs of pipeline stages)."""

from __future__ import annotations

import io
import re

from dwnas.progress import progress


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_first_line_at_once_and_last_line_when_the_caller_breaks():
    stream = io.StringIO()
    seen = []
    for item in progress(range(3), desc="search 75pct", every_s=3600, stream=stream):
        seen.append(item)
        if item == 0:  # before any work finished, the log already says what runs
            assert lines(stream) == [lines(stream)[0]]
            assert lines(stream)[0] == "search 75pct: 0/3 started"
        if item == 2:
            break  # as the evolutionary search leaves its generation loop
    out = lines(stream)
    assert seen == [0, 1, 2]
    assert len(out) == 2, out
    assert re.match(r"search 75pct: 3/3 \(100%\), [\d.]+ it/s, ETA 0s, \d+s elapsed$", out[-1])


def test_periodic_lines_carry_an_eta_and_nothing_is_printed_twice():
    stream = io.StringIO()
    list(progress(iter(range(4)), total=4, desc="x", every_s=0.0, stream=stream))
    out = lines(stream)
    assert [line.split(": ")[1].split()[0] for line in out] == ["0/4", "1/4", "2/4", "3/4", "4/4"]
    assert all("ETA" in line for line in out[1:])


def test_unknown_total_counts_without_eta():
    stream = io.StringIO()
    list(progress(iter(range(2)), desc="y", every_s=3600, stream=stream))
    assert lines(stream)[-1].startswith("y: 2 done,") and "ETA" not in lines(stream)[-1]
