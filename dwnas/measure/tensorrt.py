"""TensorRT latency through NVIDIA's ``trtexec``: the usual deployment form on Jetson.

trtexec builds an engine from the ONNX file and times it itself; this module only runs it and
parses its summary. TensorRT 8 and later print one line per statistic::

    [I] GPU Compute Time: min = 0.70 ms, max = 1.10 ms, mean = 0.75 ms, median = 0.74 ms, ...

TensorRT 7 (JetPack 4.4/4.5) prints a ``GPU Compute`` header followed by ``mean: 0.75 ms``
lines; both are read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"

_SECTIONS = {
    "gpu compute time": "gpu_compute_ms",
    "gpu compute": "gpu_compute_ms",
    "latency": "host_latency_ms",
    "host latency": "host_latency_ms",
}
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([\d.]+)\s*ms")
_BLOCK_STAT = re.compile(r"^(min|max|mean|median):\s*([\d.]+)\s*ms")
_BLOCK_PERCENTILE = re.compile(r"^percentile:\s*([\d.]+)\s*ms at (\d+(?:\.\d+)?)%")
_THROUGHPUT = re.compile(r"throughput:\s*([\d.]+)\s*qps", re.IGNORECASE)
_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


def _stat_key(name: str, pct: str | None) -> str:
    """``mean`` stays ``mean``; ``percentile(90%)`` becomes ``p90``."""
    return f"p{pct}" if pct else name


def parse_trtexec_output(text: str) -> dict:
    """Latency statistics (ms) of trtexec's performance summary, both output generations."""
    result: dict = {}
    block: str | None = None
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw).strip()
        if not line:
            continue
        throughput = _THROUGHPUT.search(line)
        if throughput:
            result["throughput_qps"] = float(throughput.group(1))
            continue
        head, sep, rest = line.partition(":")
        section = _SECTIONS.get(head.strip().lower())
        if section and sep and _STAT.search(rest):
            result[section] = {_stat_key(n, p): float(v) for n, p, v in _STAT.findall(rest)}
            block = None
            continue
        if section and not rest.strip():
            block = section
            continue
        if block:
            stat = _BLOCK_STAT.match(line)
            pct = _BLOCK_PERCENTILE.match(line)
            if stat:
                result.setdefault(block, {})[stat.group(1)] = float(stat.group(2))
            elif pct:
                result.setdefault(block, {})[_stat_key("percentile", pct.group(2))] = float(
                    pct.group(1)
                )
            else:
                block = None
    return result


def find_trtexec() -> str | None:
    found = shutil.which("trtexec")
    if found:
        return found
    if os.access(JETPACK_TRTEXEC, os.X_OK):
        return JETPACK_TRTEXEC
    return None


def run_trtexec(
    onnx_path: str | Path,
    iterations: int,
    timeout_s: float,
    fp16: bool = False,
    shapes: str | None = None,
    trtexec: str | None = None,
) -> tuple[dict | None, str | None]:
    """Run trtexec on an ONNX file: (statistics, None) or (None, reason)."""
    exe = trtexec or find_trtexec()
    if exe is None:
        return None, f"trtexec not found on PATH or at {JETPACK_TRTEXEC}"
    command: Sequence[str] = [exe, f"--onnx={onnx_path}", f"--iterations={iterations}"]
    if fp16:
        command = [*command, "--fp16"]
    if shapes:
        command = [*command, f"--shapes={shapes}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"trtexec timed out after {timeout_s:.0f} s"
    except OSError as exc:
        return None, f"trtexec could not run: {exc}"
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        return None, f"trtexec failed (exit {done.returncode}): {tail[0]}"
    stats = parse_trtexec_output(done.stdout)
    gpu = stats.get("gpu_compute_ms", {})
    if "mean" not in gpu or "median" not in gpu:
        return None, "trtexec output had no GPU Compute Time mean/median"
    stats["command"] = list(command)
    stats["precision"] = "fp16" if fp16 else "fp32"
    return stats, None
