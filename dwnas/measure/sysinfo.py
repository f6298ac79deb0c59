"""What machine a measurement ran on: CPU, clocks, Jetson model, L4T release, power mode.

Everything is read under a root directory standing in for ``/`` (so fixture trees can play a
Jetson); each item that cannot be read is ``None`` with a ``*_reason``. External commands
(``nvpmodel``) only run when the root is the live system.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path

_GPU_DEVFREQ = re.compile(r"gpu|gv11b|gp10b|ga10b|gm20b|gb10b", re.IGNORECASE)


def is_live_root(root: str | Path) -> bool:
    return Path(root).resolve() == Path("/")


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(content, None) or (None, reason)."""
    try:
        return path.read_text(errors="replace"), None
    except FileNotFoundError:
        return None, f"{path} missing"
    except PermissionError:
        return None, f"{path}: permission denied"
    except OSError as exc:
        return None, f"{path}: {exc}"


def cpu_model(root: Path) -> str | None:
    """``model name`` from /proc/cpuinfo; ARM kernels often lack it, then platform.processor()."""
    text, _ = read_text(root / "proc/cpuinfo")
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"model name", "Hardware", "Model"} and value.strip():
            return value.strip()
    return (platform.processor() or None) if is_live_root(root) else None


def jetson_model(root: Path) -> str | None:
    text, _ = read_text(root / "proc/device-tree/model")
    if text is None:
        return None
    return text.replace("\x00", "").strip() or None


def l4t_release(root: Path) -> str | None:
    """``R32.7.1`` from /etc/nv_tegra_release (``# R32 (release), REVISION: 7.1, ...``)."""
    text, _ = read_text(root / "etc/nv_tegra_release")
    match = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", text or "")
    return f"R{match.group(1)}.{match.group(2)}" if match else None


def parse_nvpmodel_query(text: str) -> dict | None:
    """``nvpmodel -q`` output: ``NV Power Mode: MAXN`` then the mode id on its own line."""
    match = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", text)
    if match:
        return {"name": match.group(1), "id": int(match.group(2))}
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return {"name": match.group(1), "id": None} if match else None


def _power_mode_from_files(root: Path) -> tuple[dict | None, str | None]:
    status, reason = read_text(root / "var/lib/nvpmodel/status")
    if status is None:
        return None, reason
    match = re.search(r"pmode:(\d+)", status)
    if not match:
        return None, f"{root / 'var/lib/nvpmodel/status'}: no pmode field"
    mode_id = int(match.group(1))
    conf, _ = read_text(root / "etc/nvpmodel.conf")
    name = None
    for found_id, found_name in re.findall(
        r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf or ""
    ):
        if int(found_id) == mode_id:
            name = found_name
    return {"name": name, "id": mode_id}, None


def power_mode(root: Path) -> tuple[dict | None, str | None]:
    """Jetson power mode: ``nvpmodel -q`` on the live system, else nvpmodel's status file."""
    if is_live_root(root) and shutil.which("nvpmodel"):
        try:
            done = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
            parsed = parse_nvpmodel_query(done.stdout)
            if parsed:
                return parsed, None
        except (OSError, subprocess.SubprocessError):
            pass
    mode, reason = _power_mode_from_files(root)
    if mode is None:
        return None, f"nvpmodel not on PATH and {reason}"
    return mode, None


def cpu_clocks_mhz(root: Path) -> tuple[dict | None, str | None]:
    base = root / "sys/devices/system/cpu"
    clocks = {}
    for path in sorted(
        base.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"), key=lambda p: int(p.parent.parent.name[3:])
    ):
        text, _ = read_text(path)
        if text and text.strip().isdigit():
            clocks[path.parent.parent.name] = int(text.strip()) / 1000.0
    if not clocks:
        return None, f"no readable {base}/cpu*/cpufreq/scaling_cur_freq (VM or cpufreq off?)"
    return clocks, None


def gpu_clock(root: Path) -> tuple[dict | None, str | None]:
    """GPU devfreq ``cur_freq`` / ``max_freq`` (Hz in sysfs; MHz here) of the Jetson's iGPU."""
    base = root / "sys/class/devfreq"
    for entry in sorted(base.glob("*")):
        if not _GPU_DEVFREQ.search(entry.name):
            continue
        cur, reason = read_text(entry / "cur_freq")
        if cur is None:
            return None, reason
        top, _ = read_text(entry / "max_freq")
        return {
            "device": entry.name,
            "cur_mhz": int(cur.strip()) / 1e6,
            "max_mhz": int(top.strip()) / 1e6 if top and top.strip().isdigit() else None,
        }, None
    return None, f"no GPU devfreq entry under {base}"


def clocks(root: Path) -> dict:
    cpu, cpu_reason = cpu_clocks_mhz(root)
    gpu, gpu_reason = gpu_clock(root)
    return {"cpu_mhz": cpu, "cpu_reason": cpu_reason, "gpu": gpu, "gpu_reason": gpu_reason}


def jetson_description(root: Path) -> dict | None:
    """Model, L4T release and power mode when the root looks like a Jetson; else None."""
    model = jetson_model(root)
    release = l4t_release(root)
    if not release and not (model and ("jetson" in model.lower() or "nvidia" in model.lower())):
        return None
    mode, mode_reason = power_mode(root)
    return {
        "model": model,
        "l4t_release": release,
        "power_mode": mode,
        "power_mode_reason": mode_reason,
    }


def machine_description(root: str | Path = "/") -> dict:
    """Host facts common to all backends."""
    root = Path(root)
    import torch

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort_version,
        "sysfs_root": str(root),
        "jetson": jetson_description(root),
        "clocks": clocks(root),
    }
