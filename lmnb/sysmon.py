"""System monitor: CPU, RAM, the model's memory, live tokens/s, queue depth and NVIDIA GPUs.

    from lmnb.sysmon import Monitor
    mon = Monitor()
    snap = mon.sample()      # Snapshot(cpu_percent=..., tokens_per_s=..., gpus=[GPUStat(...)], ...)

Used by the System pane of the studio and meant for anything else that polls (a JupyterLab
status bar), so it imports no widget library. A sample only *reads*: engine attributes, psutil
counters and NVML, never anything queued on the engine's worker thread, so it never waits behind
a generation. It costs well under a millisecond without a GPU (see tests/test_widget_panels.py).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

# Rates over a window shorter than this are noise: such a sample reuses the previous rate.
_MIN_WINDOW_S = 0.25
_OFFLOAD_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


@dataclass
class GPUStat:
    """One NVIDIA GPU, as NVML reports it now (``None``: not reported by this GPU/driver)."""

    name: str
    vram_used: int
    vram_total: int
    utilization: Optional[float] = None  # percent of the last sample period the GPU was busy
    temperature: Optional[float] = None  # degrees Celsius


@dataclass
class Snapshot:
    """The machine and the kernel's engine at one instant."""

    time: float = 0.0  # time.monotonic() of the sample
    cpu_percent: float = 0.0  # whole system, 0-100
    process_cpu_percent: float = 0.0  # this process, as a share of all cores (0-100)
    ram_used: int = 0
    ram_total: int = 0
    rss: int = 0  # this process's resident memory
    model: Optional[str] = None  # the loaded model's name
    model_bytes: int = 0  # the loaded model's weights
    tokens_per_s: float = 0.0  # generation speed since the previous sample (0 when idle)
    last_tokens_per_s: Optional[float] = None  # speed of the last finished generation
    queue_depth: int = 0  # requests running or waiting
    generating: bool = False
    gpus: list[GPUStat] = field(default_factory=list)
    layers_offloaded: Optional[tuple[int, int]] = None  # (on GPU, of), as llama.cpp counts them

    @property
    def ram_fraction(self) -> float:
        return self.ram_used / self.ram_total if self.ram_total else 0.0


def _engine_or_none() -> Any:
    # The session's engine if one exists; never create one (a status bar must not start llama.cpp).
    from . import api

    return api.engine_if_started()


class Monitor:
    """Takes ``Snapshot``s; keeps the previous counters so that rates cover the time between samples.

    Args:
        engine: the ``Engine`` to watch; default: the session's (``lmnb.get_engine()``) once it exists.
    """

    def __init__(self, engine: Any = None) -> None:
        import psutil

        self._engine = engine
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # primes the per-process counter
        self._ncpu = psutil.cpu_count() or 1
        self._lock = threading.Lock()
        self._cpu_prev = self._cpu_times()
        self._cpu_pct = 0.0
        self._tok_prev: Optional[tuple[float, int]] = None
        self._tok_rate = 0.0
        self._model_key: Any = None  # the ModelInfo the cached fields below belong to
        self._model_bytes = 0
        self._layers: Optional[tuple[int, int]] = None

    @property
    def engine(self) -> Any:
        return self._engine if self._engine is not None else _engine_or_none()

    # --------------------------------------------------------------------------------------------
    def sample(self) -> Snapshot:
        """Read everything now. Never raises: what cannot be read is left at its zero value."""
        import psutil

        with self._lock:
            now = time.monotonic()
            snap = Snapshot(time=now)
            try:
                vm = psutil.virtual_memory()
                snap.ram_used, snap.ram_total = int(vm.total - vm.available), int(vm.total)
                snap.rss = int(self._proc.memory_info().rss)
                snap.process_cpu_percent = min(self._proc.cpu_percent(None) / self._ncpu, 100.0)
                snap.cpu_percent = self._system_cpu()
            except Exception:
                pass
            try:
                self._read_engine(snap, now)
            except Exception:
                pass
            snap.gpus = gpu_stats()
            return snap

    # --------------------------------------------------------------------------------------------
    @staticmethod
    def _cpu_times() -> tuple[float, float]:
        import psutil

        t = psutil.cpu_times()
        total = sum(t)
        # guest time is already counted in user/nice on Linux (psutil does the same)
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total, total - idle

    def _system_cpu(self) -> float:
        # Our own deltas, not psutil.cpu_percent(None), whose one global baseline every other
        # caller in the process would move.
        total, busy = self._cpu_times()
        d_total, d_busy = total - self._cpu_prev[0], busy - self._cpu_prev[1]
        if d_total >= _MIN_WINDOW_S * self._ncpu * 0.5:  # enough ticks for a meaningful share
            self._cpu_pct = max(0.0, min(100.0, 100.0 * d_busy / d_total)) if d_total > 0 else 0.0
            self._cpu_prev = (total, busy)
        return self._cpu_pct

    def _read_engine(self, snap: Snapshot, now: float) -> None:
        eng = self.engine
        if eng is None:
            self._tok_prev, self._tok_rate = None, 0.0
            return
        info = eng.info
        if info is not self._model_key:
            self._model_key = info
            st = eng.status() if info is not None else None
            self._model_bytes = int(st.model_bytes) if st is not None else 0
            self._layers = self._offload(st.options, info) if st is not None else None
        snap.model = info.name if info is not None else None
        snap.model_bytes = self._model_bytes if info is not None else 0
        snap.layers_offloaded = self._layers
        snap.last_tokens_per_s = eng.last_tokens_per_s

        snap.generating = eng.generating
        snap.queue_depth = eng.queue_depth
        count = eng.tokens_generated
        prev = self._tok_prev
        if prev is None:
            self._tok_prev, self._tok_rate = (now, count), 0.0
        else:
            if now - prev[0] >= _MIN_WINDOW_S:
                self._tok_rate = (count - prev[1]) / (now - prev[0])
                self._tok_prev = (now, count)
            elif not snap.generating and count == prev[1]:
                self._tok_rate = 0.0  # idle: no need to wait for a full window to say so
        snap.tokens_per_s = self._tok_rate

    @staticmethod
    def _offload(opts: Any, info: Any) -> Optional[tuple[int, int]]:
        """``(offloaded, total)`` layers of the model just loaded.

        llama.cpp logs "offloaded X/Y layers to GPU" (Y = layers + the output layer) at each load
        on a GPU build; the latest such line is this model's when its Y matches. Otherwise (log
        level above info, buffer cleared) it is computed from the load options the way llama.cpp
        does. A CPU-only build offloads nothing and logs no such line.
        """
        total = int(info.layers) + 1 if getattr(info, "layers", 0) else None
        try:
            from .engine.logs import LOGS

            for rec in reversed(LOGS.records()):
                m = _OFFLOAD_RE.search(rec.text)
                if m:
                    got = (int(m.group(1)), int(m.group(2)))
                    if total is None or got[1] == total:
                        return got
                    break
        except Exception:
            pass
        if total is None:
            return None
        from .sources.fit import llama_offload

        if not llama_offload():
            return (0, total)
        want = getattr(opts, "n_gpu_layers", None)
        if want in (None, "auto", "max", -1):
            return (total, total)
        try:
            return (min(max(int(want), 0), total), total)
        except (TypeError, ValueError):
            return None


# ------------------------------------------------------------------------------------------------
# NVML
# ------------------------------------------------------------------------------------------------
_names: dict[int, str] = {}


def gpu_stats() -> list[GPUStat]:
    """Every NVIDIA GPU's VRAM, utilization and temperature; ``[]`` without NVML, driver or GPU."""
    from .sources.fit import nvml_ok  # nvmlInit once per process, cached (failures included)

    if not nvml_ok():
        return []
    import pynvml

    out: list[GPUStat] = []
    try:
        n = pynvml.nvmlDeviceGetCount()
    except Exception:
        return out
    for i in range(n):
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _names.get(i)
            if name is None:
                raw = pynvml.nvmlDeviceGetName(h)
                name = _names[i] = raw.decode() if isinstance(raw, bytes) else str(raw)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            stat = GPUStat(name, int(mem.used), int(mem.total))
        except Exception:  # a GPU that fell off the bus, a driver mismatch: skip it
            continue
        try:
            stat.utilization = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:  # not supported on some GPUs (MIG instances, vGPU)
            pass
        try:
            stat.temperature = float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        except Exception:
            pass
        out.append(stat)
    return out


__all__ = ["GPUStat", "Monitor", "Snapshot", "gpu_stats"]
