"""Measurement backends: host CPU, CUDA GPU, NVIDIA Jetson, behind one interface.

A backend knows its torch device, how to synchronise it and which energy sensor to read; the
timing procedure is shared (:meth:`Backend.measure`), so numbers from different backends mean
the same thing: per-iteration wall-clock latency after a synchronise, and energy integrated over
exactly the timed loop (gross board / package energy, idle power included).
"""

from __future__ import annotations

import datetime as _dt
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError
from dwnas.measure.meters import EnergyMeter, SensorError
from dwnas.measure.models import Runner, _first_line, load_model, module_runner
from dwnas.measure.settings import MeasureSettings
from dwnas.measure.stats import latency_stats, unmeasured_energy

SCHEMA_VERSION = 1


def batch_shape(input_shape: Sequence[int], batch: int) -> tuple[int, ...]:
    """(C, H, W) -> (batch, C, H, W); a 4-tuple must already carry ``batch`` first."""
    shape = tuple(int(d) for d in input_shape)
    if any(d <= 0 for d in shape):
        raise DwnasError(f"measure: input shape {list(shape)} has a non-positive size")
    if len(shape) == 3:
        return (batch, *shape)
    if len(shape) == 4:
        if shape[0] != batch:
            raise DwnasError(
                f"measure: input shape {list(shape)} has batch {shape[0]}, settings say {batch}"
            )
        return shape
    raise DwnasError(f"measure: input shape must be (C, H, W) or (N, C, H, W), got {list(shape)}")


def timed_loop(
    run: Callable[[], Any], sync: Callable[[], None], iters: int, min_seconds: float
) -> tuple[list[int], int]:
    """Time ``iters`` synchronised iterations (more until ``min_seconds`` have passed).

    Returns per-iteration durations in ns and the loop's wall time; each duration runs from one
    post-synchronise timestamp to the next, so they add up to the wall time.
    """
    min_ns = int(min_seconds * 1e9)
    durations: list[int] = []
    start = last = time.perf_counter_ns()
    while len(durations) < iters or last - start < min_ns:
        run()
        sync()
        now = time.perf_counter_ns()
        durations.append(now - last)
        last = now
    return durations, last - start


def metered_loop(
    meter: EnergyMeter | None,
    meter_reason: str | None,
    batch: int,
    loop: Callable[[], tuple[list[int], int]],
) -> tuple[list[int], int, dict]:
    """Run a timed loop inside an energy window: (durations, wall ns, energy entry).

    A sensor failing at start or stop leaves the timing intact and the energy null with why.
    """
    reason = meter_reason
    started = False
    if meter is not None:
        try:
            meter.start()
            started = True
        except SensorError as exc:
            reason = str(exc)
    durations, wall_ns = loop()
    if not started:
        return durations, wall_ns, unmeasured_energy(reason)
    try:
        energy = meter.stop(len(durations) * batch)
    except SensorError as exc:
        return durations, wall_ns, unmeasured_energy(str(exc))
    energy["reason"] = None
    return durations, wall_ns, energy


class Backend(ABC):
    """Where and how a model is timed; subclasses name the device and the energy sensor."""

    name: str = "base"
    torch_device: str = "cpu"
    onnx_cpu_fallback = False

    def __init__(self, sysfs_root: str | Path = "/"):
        self.sysfs_root = Path(sysfs_root)
        self.notes: list[str] = []

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU)."""
        return None

    @abstractmethod
    def energy_meter(self, settings: MeasureSettings) -> EnergyMeter:
        """A fresh meter for this device; SensorError with the reason when there is none."""

    def describe(self) -> dict:
        import torch

        from dwnas.measure.sysinfo import machine_description

        return {
            "backend": self.name,
            "torch_device": self.torch_device,
            "threads": torch.get_num_threads(),
            "gpu_name": None,
            **machine_description(self.sysfs_root),
        }

    def prepare(self, settings: MeasureSettings):
        """A context entered around the whole measurement (cudnn flags and the like)."""
        import contextlib

        return contextlib.nullcontext()

    def runner(self, model: Any, settings: MeasureSettings, threads: int) -> Runner:
        if isinstance(model, Runner):
            return model
        if isinstance(model, str | Path):
            return load_model(
                model, self.torch_device, threads, settings.channels_last, self.onnx_cpu_fallback
            )
        import torch

        if isinstance(model, torch.nn.Module):
            return module_runner(model, self.torch_device, settings.channels_last)
        raise DwnasError(
            f"measure: cannot measure a {type(model).__name__}; give a path or nn.Module"
        )

    def measure(self, model: Any, input_shape: Sequence[int], settings: MeasureSettings) -> dict:
        """Latency, throughput and energy of ``model`` (path, nn.Module or Runner) as a measure.json dict."""
        import torch

        previous_threads = torch.get_num_threads()
        threads = settings.threads or previous_threads
        torch.set_num_threads(threads)
        try:
            with self.prepare(settings):
                return self._measure(model, input_shape, settings, threads)
        finally:
            torch.set_num_threads(previous_threads)

    def _measure(self, model, input_shape, settings: MeasureSettings, threads: int) -> dict:
        notes = list(self.notes)
        shape = batch_shape(input_shape, settings.batch)
        runner = self.runner(model, settings, threads)
        notes.extend(runner.notes)
        if settings.channels_last and runner.format == "onnx":
            notes.append("channels_last does not apply to ONNX models; ignored")
        try:
            meter: EnergyMeter | None = self.energy_meter(settings)
            meter_reason = None
        except SensorError as exc:
            meter, meter_reason = None, str(exc)
        try:
            with runner.context():
                inputs = runner.make_input(shape, settings.seed)
                try:
                    runner(inputs)
                    self.synchronize()
                except Exception as exc:  # any model failure is the user's input problem
                    raise DwnasError(
                        f"measure: model failed on input {list(shape)} ({_first_line(exc)})"
                    ) from exc
                durations, wall_ns, latency_energy = self._warm_and_time(
                    runner, inputs, settings.batch, settings, meter, meter_reason
                )
                throughput, throughput_reason, throughput_energy = self._throughput(
                    runner,
                    shape,
                    settings,
                    (durations, wall_ns, latency_energy),
                    meter,
                    meter_reason,
                )
            tensorrt, tensorrt_reason = self._tensorrt(runner, shape, settings)
        finally:
            if meter is not None:
                meter.close()
        if "interval_ms" in latency_energy and latency_energy["samples"] < 3:
            notes.append("timed loop shorter than two sampling intervals; raise --min-seconds")
        device = self.describe()
        device["threads"] = threads
        power = None
        if latency_energy.get("rails_mean_mw") is not None:
            power = {**latency_energy["rails_mean_mw"], "total": latency_energy["mean_power_mw"]}
        return {
            "schema_version": SCHEMA_VERSION,
            "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "backend": self.name,
            "model": runner.describe(),
            "input_shape": list(shape),
            "device": device,
            "settings": settings.to_dict(),
            "latency_ms": {**latency_stats(durations), "batch": settings.batch},
            "throughput": throughput,
            "throughput_reason": throughput_reason,
            "energy_per_image_mj": latency_energy["per_image_mj"],
            "energy_reason": latency_energy["reason"],
            "power_mw": power,
            "energy": {
                "source": meter.source if meter is not None else None,
                "sensor": meter.describe() if meter is not None else None,
                "latency_loop": latency_energy,
                "throughput_loop": throughput_energy,
            },
            "tensorrt": tensorrt,
            "tensorrt_reason": tensorrt_reason,
            "notes": notes,
        }

    def _warm_and_time(self, runner, inputs, batch, settings, meter, meter_reason):
        """Warm up, then the timed loop inside an energy window: (durations, wall ns, energy).
        The one measurement loop of both the latency and the throughput figure."""
        for _ in range(settings.warmup):
            runner(inputs)
        self.synchronize()
        return metered_loop(
            meter,
            meter_reason,
            batch,
            lambda: timed_loop(
                lambda: runner(inputs), self.synchronize, settings.iters, settings.min_seconds
            ),
        )

    def _throughput(self, runner, shape, settings, latency_loop, meter, meter_reason):
        """Images/s: from the latency loop when the batch is the same, else a second timed loop.

        Returns (throughput or None, reason or None, energy entry of the loop it came from).
        """
        batch = settings.throughput_batch or settings.batch
        if batch == settings.batch:
            durations, wall_ns, energy = latency_loop
            result = {
                "batch": batch,
                "images_per_s": batch * len(durations) / (wall_ns / 1e9),
                "iterations": len(durations),
                "duration_s": wall_ns / 1e9,
                "from": "latency_loop",
            }
            return result, None, energy
        if runner.fixed_batch is not None and runner.fixed_batch != batch:
            reason = f"model has a fixed batch size of {runner.fixed_batch}"
            return None, reason, unmeasured_energy(reason)
        inputs = runner.make_input((batch, *shape[1:]), settings.seed)
        try:
            runner(inputs)
            self.synchronize()
        except Exception as exc:  # a model traced at batch 1 may refuse other batches
            reason = f"model failed at batch {batch} ({_first_line(exc)})"
            return None, reason, unmeasured_energy(reason)
        durations, wall_ns, energy = self._warm_and_time(
            runner, inputs, batch, settings, meter, meter_reason
        )
        result = {
            "batch": batch,
            "images_per_s": batch * len(durations) / (wall_ns / 1e9),
            "iterations": len(durations),
            "duration_s": wall_ns / 1e9,
            "from": "throughput_loop",
            "latency_ms": latency_stats(durations),
        }
        return result, None, energy

    def _tensorrt(self, runner, shape, settings):
        if not settings.trt:
            return None, "not requested (trt=false)"
        if runner.format != "onnx":
            return None, f"TensorRT needs an ONNX model; this one is {runner.format}"
        from dwnas.measure.tensorrt import run_trtexec

        shapes = None
        if runner.dynamic:
            shapes = f"{runner.input_name}:{'x'.join(str(d) for d in shape)}"
        return run_trtexec(
            runner.path,
            settings.iters,
            settings.trt_timeout_s,
            fp16=settings.trt_fp16,
            shapes=shapes,
        )


class HostBackend(Backend):
    """Eager PyTorch / onnxruntime on the host CPU; energy from RAPL package counters."""

    name = "host"
    torch_device = "cpu"

    def energy_meter(self, settings: MeasureSettings) -> EnergyMeter:
        from dwnas.measure.rapl import RaplMeter

        return RaplMeter(self.sysfs_root)


class CudaBackend(Backend):
    """One CUDA GPU, synchronised timing; energy from the NVML total-energy counter."""

    name = "cuda"

    def __init__(self, cuda_index: int = 0, sysfs_root: str | Path = "/"):
        super().__init__(sysfs_root)
        import torch

        if not torch.cuda.is_available():
            raise DwnasError("CUDA requested but torch.cuda.is_available() is False")
        if cuda_index >= torch.cuda.device_count():
            raise DwnasError(
                f"CUDA device {cuda_index} requested but only {torch.cuda.device_count()} visible"
            )
        self.cuda_index = cuda_index
        self.torch_device = f"cuda:{cuda_index}"

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.torch_device)

    def prepare(self, settings: MeasureSettings):
        """cudnn autotuning on, as in deployment; the previous flag is restored afterwards."""
        import contextlib

        import torch

        @contextlib.contextmanager
        def benchmark_mode():
            previous = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
            try:
                yield
            finally:
                torch.backends.cudnn.benchmark = previous

        return benchmark_mode()

    def energy_meter(self, settings: MeasureSettings) -> EnergyMeter:
        import torch

        from dwnas.measure.nvml import NvmlMeter

        uuid = getattr(torch.cuda.get_device_properties(self.cuda_index), "uuid", None)
        return NvmlMeter(self.cuda_index, uuid=f"GPU-{uuid}" if uuid else None)

    def describe(self) -> dict:
        import torch

        info = super().describe()
        info["gpu_name"] = torch.cuda.get_device_name(self.cuda_index)
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = True
        return info


class JetsonBackend(CudaBackend):
    """A Jetson board: its iGPU through CUDA (CPU when torch has no CUDA), INA3221 rail energy.

    Energy comes from the INA3221 sysfs files; when they are absent and the root is the live
    system, from ``tegrastats``; otherwise it is null with both reasons.
    """

    name = "jetson"
    onnx_cpu_fallback = True  # Jetson onnxruntime wheels often lack CUDA; trtexec covers the GPU

    def __init__(self, sysfs_root: str | Path = "/", cuda_index: int = 0):
        from dwnas.measure.jetson import require_jetson

        Backend.__init__(self, sysfs_root)
        require_jetson(self.sysfs_root)  # measuring "jetson" off a board would be a false label
        import torch

        self.cuda = torch.cuda.is_available()
        self.cuda_index = cuda_index
        self.torch_device = f"cuda:{cuda_index}" if self.cuda else "cpu"
        if not self.cuda:
            self.notes.append("torch has no CUDA here: the Jetson backend measured on the CPU")

    def synchronize(self) -> None:
        if self.cuda:
            super().synchronize()

    def prepare(self, settings: MeasureSettings):
        if self.cuda:
            return super().prepare(settings)
        return Backend.prepare(self, settings)

    def energy_meter(self, settings: MeasureSettings) -> EnergyMeter:
        from dwnas.measure.jetson import Ina3221Meter
        from dwnas.measure.sysinfo import is_live_root
        from dwnas.measure.tegrastats import TegrastatsMeter, find_tegrastats

        try:
            return Ina3221Meter(self.sysfs_root, settings.sample_interval_ms, settings.total_rail)
        except SensorError as exc:
            sysfs_reason = str(exc)
        if not is_live_root(self.sysfs_root):
            raise SensorError(f"{sysfs_reason}; tegrastats not tried (sysfs root is not /)")
        if find_tegrastats() is None:
            raise SensorError(f"{sysfs_reason}; tegrastats not found on PATH")
        return TegrastatsMeter(settings.sample_interval_ms, settings.total_rail)

    def describe(self) -> dict:
        info = super().describe() if self.cuda else Backend.describe(self)
        if info.get("jetson") is None:
            info["jetson_reason"] = (
                f"no Jetson model in {self.sysfs_root / 'proc/device-tree/model'} "
                f"and no {self.sysfs_root / 'etc/nv_tegra_release'}"
            )
        return info


def make_backend(settings: MeasureSettings) -> Backend:
    """The backend ``settings.device`` names, configured from the settings."""
    if settings.device == "host":
        return HostBackend(settings.sysfs_root)
    if settings.device == "cuda":
        return CudaBackend(settings.cuda_index, settings.sysfs_root)
    if settings.device == "jetson":
        return JetsonBackend(settings.sysfs_root, settings.cuda_index)
    raise DwnasError(f"measure: unknown device {settings.device!r}")
