"""Latency and energy measurement: host CPU (RAPL), CUDA (NVML), Jetson (INA3221), remote agent.

Importing this package stays light (no torch); the heavy modules load when a function runs.
Entry points: :func:`measure_module`, :func:`measure_file`, :func:`dwnas.measure.remote.measure_remote`
and the backends in :mod:`dwnas.measure.backends`. See docs/measure.md.
"""

from dwnas.measure.api import measure_file, measure_module
from dwnas.measure.settings import MeasureSettings

__all__ = ["MeasureSettings", "measure_file", "measure_module"]
