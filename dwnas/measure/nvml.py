"""GPU energy from NVML (package ``nvidia-ml-py``): the board's total-energy counter, in mJ.

``nvmlDeviceGetTotalEnergyConsumption`` exists on Volta and newer data-centre and desktop GPUs;
the driver refreshes it at its own pace (tens of ms), so short windows are coarse: use
``min_seconds``. It counts the whole GPU board, whatever else runs on it. Jetson boards have no
NVML; their energy comes from the INA3221 rails instead.
"""

from __future__ import annotations

import contextlib
import os

from dwnas.measure.meters import CounterMeter, SensorError


def _nvml():
    try:
        import pynvml
    except ImportError as exc:
        raise SensorError("NVML not available: package nvidia-ml-py is not installed") from exc
    return pynvml


class NvmlMeter(CounterMeter):
    """Energy of one GPU over a window, from the NVML total-energy counter.

    The GPU is found by the UUID torch reports for ``cuda_index`` when given, so that
    CUDA_VISIBLE_DEVICES renumbering cannot pick the wrong board; else by NVML index.
    """

    def __init__(self, cuda_index: int = 0, uuid: str | None = None):
        pynvml = _nvml()
        self._pynvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise SensorError(f"NVML not available: {exc}") from exc
        self._open = True
        try:
            handle = self._find(cuda_index, uuid)
            self.gpu_name = pynvml.nvmlDeviceGetName(handle)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except SensorError:
            self.close()
            raise
        except pynvml.NVMLError_NotSupported as exc:
            self.close()
            raise SensorError(
                "NVML total-energy counter not supported on this GPU (needs Volta or newer)"
            ) from exc
        except pynvml.NVMLError as exc:
            self.close()
            raise SensorError(f"NVML energy not readable: {exc}") from exc
        self._handle = handle
        super().__init__(self._read_mj, "nvml")

    def _find(self, cuda_index: int, uuid: str | None):
        """The NVML handle of torch's device: by UUID, else by index when no renumbering applies."""
        pynvml = self._pynvml
        if uuid:
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
                self.matched_by = "uuid"
                return handle
            except pynvml.NVMLError:
                if os.environ.get("CUDA_VISIBLE_DEVICES"):
                    raise SensorError(
                        f"NVML has no device with UUID {uuid} and CUDA_VISIBLE_DEVICES renumbers "
                        "devices, so the index cannot be trusted"
                    ) from None
        self.matched_by = "index"
        return pynvml.nvmlDeviceGetHandleByIndex(cuda_index)

    def _read_mj(self) -> float:
        try:
            return float(self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._pynvml.NVMLError as exc:
            raise SensorError(f"NVML energy read failed: {exc}") from exc

    def describe(self) -> dict:
        return {"source": self.source, "gpu": self.gpu_name, "matched_by": self.matched_by}

    def close(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            with contextlib.suppress(self._pynvml.NVMLError):
                self._pynvml.nvmlShutdown()
