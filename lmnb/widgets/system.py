"""The System pane: what LM Studio's resource monitor shows, live, in a notebook output.

>>> from lmnb.widgets.system import System
>>> System()

CPU and RAM of the machine, this kernel's memory, the loaded model's memory, the current
generation speed and the queue; with an NVIDIA GPU its VRAM, utilization, temperature and how
many layers llama.cpp offloaded to it. Refreshed about once a second by the shared ticker thread
(``lmnb.sysmon.Monitor`` reads, never queues work on the engine); ``close()`` stops that.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import ipywidgets as widgets

from ..markup import html
from ..sysmon import GPUStat, Monitor, Snapshot
from ..tables import human_bytes
from ._html import SafeHTML
from ._pane import StatusPane

_LABEL = widgets.Layout(width="7em", min_width="7em")
_BAR = widgets.Layout(width="12em")


def _row(name: str, *values: widgets.Widget) -> widgets.HBox:
    return widgets.HBox([SafeHTML(html("<b>{}</b>", name), layout=_LABEL), *values],
                        layout=widgets.Layout(align_items="center"))  # fmt: skip


def _bar() -> widgets.FloatProgress:
    return widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=_BAR)


def _bar_style(fraction: float) -> str:
    return "danger" if fraction >= 0.9 else ("warning" if fraction >= 0.75 else "")


class _GPUView(widgets.VBox):
    """One GPU: ``name``, ``vram_bar`` + ``vram``, ``utilization``, ``temperature``."""

    def __init__(self) -> None:
        self.name = SafeHTML()
        self.vram_bar = _bar()
        self.vram = SafeHTML()
        self.utilization = SafeHTML()
        self.temperature = SafeHTML()
        super().__init__([
            _row("GPU", self.name),
            _row("VRAM", self.vram_bar, self.vram),
            _row("GPU load", self.utilization),
            _row("GPU temp", self.temperature),
        ])  # fmt: skip

    def show(self, g: GPUStat) -> None:
        frac = g.vram_used / g.vram_total if g.vram_total else 0.0
        self.name.value = g.name  # text: SafeHTML escapes it (a GPU name is not ours)
        self.vram_bar.value = frac
        self.vram_bar.bar_style = _bar_style(frac)
        self.vram.value = f"{human_bytes(g.vram_used)} of {human_bytes(g.vram_total)}"
        self.utilization.value = "n/a" if g.utilization is None else f"{g.utilization:.0f}%"
        self.temperature.value = "n/a" if g.temperature is None else f"{g.temperature:.0f} °C"


class System(StatusPane, widgets.VBox):
    """Live resource monitor (LM Studio's system panel).

    Parts: ``cpu``, ``ram_bar`` (FloatProgress 0..1) and ``ram``, ``rss`` (this kernel),
    ``model_memory``, ``tokens_per_s``, ``queue``; ``gpu_box`` holding one ``gpu_views`` entry per
    GPU (``name``, ``vram_bar``, ``vram``, ``utilization``, ``temperature``) and ``layers``, or
    ``no_gpu`` ("No NVIDIA GPU detected"). ``snapshot`` is the latest ``Snapshot``; ``refresh()``
    takes one now.

    Args:
        monitor: the ``lmnb.sysmon.Monitor`` to read (default: a new one on the session's engine).
        live: refresh about once a second from the shared ticker thread until ``close()``.
    """

    def __init__(self, *, monitor: Optional[Monitor] = None, live: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("lmnb-system")
        self.monitor = monitor if monitor is not None else Monitor()
        self.snapshot: Optional[Snapshot] = None
        self._lock = threading.Lock()

        self.cpu = SafeHTML()
        self.ram_bar = _bar()
        self.ram = SafeHTML()
        self.rss = SafeHTML()
        self.model_memory = SafeHTML()
        self.tokens_per_s = SafeHTML()
        self.queue = SafeHTML()
        self.no_gpu = SafeHTML("No NVIDIA GPU detected")
        self.layers = SafeHTML()
        self.layers_row = _row("Offloaded", self.layers)
        self.gpu_views: list[_GPUView] = []
        self.gpu_box = widgets.VBox([self.no_gpu])
        self.children = [
            _row("CPU", self.cpu),
            _row("RAM", self.ram_bar, self.ram),
            _row("Kernel", self.rss),
            _row("Model", self.model_memory),
            _row("Speed", self.tokens_per_s),
            _row("Queue", self.queue),
            self.gpu_box,
        ]
        self.refresh()
        if live:
            self._go_live(self.refresh)

    def refresh(self) -> Optional[Snapshot]:
        """Sample now and show it; returns the ``Snapshot`` (never raises)."""
        with self._lock:
            try:
                snap = self.monitor.sample()
                self._show(snap)
            except Exception:  # noqa: BLE001 - runs on the ticker thread: nothing may escape
                return None
            self.snapshot = snap
            return snap

    def _show(self, s: Snapshot) -> None:
        self.cpu.value = f"{s.cpu_percent:.0f}% (this kernel {s.process_cpu_percent:.0f}%)"
        self.ram_bar.value = s.ram_fraction
        self.ram_bar.bar_style = _bar_style(s.ram_fraction)
        self.ram.value = f"{human_bytes(s.ram_used)} of {human_bytes(s.ram_total)}"
        self.rss.value = f"{human_bytes(s.rss)} resident"
        if s.model is None:
            self.model_memory.value = "no model loaded"
        else:
            self.model_memory.value = f"{human_bytes(s.model_bytes)} · {s.model}"  # text, escaped by SafeHTML
        if s.tokens_per_s > 0:
            self.tokens_per_s.value = f"{s.tokens_per_s:.1f} tok/s"
        else:
            last = "" if s.last_tokens_per_s is None else f" · last {s.last_tokens_per_s:.1f} tok/s"
            self.tokens_per_s.value = "0 tok/s (idle)" + last
        self.queue.value = f"{s.queue_depth} request{'' if s.queue_depth == 1 else 's'}"
        self._show_gpus(s)

    def _show_gpus(self, s: Snapshot) -> None:
        if len(self.gpu_views) != len(s.gpus):
            for old in self.gpu_views:
                old.close()
            self.gpu_views = [_GPUView() for _ in s.gpus]
            self.gpu_box.children = [*self.gpu_views, self.layers_row] if s.gpus else [self.no_gpu]
        if not s.gpus:
            return
        for view, g in zip(self.gpu_views, s.gpus):
            view.show(g)
        if s.layers_offloaded is None:
            self.layers.value = "unknown" if s.model else "no model loaded"
        else:
            on, of = s.layers_offloaded
            note = "" if on or not s.model else " (CPU only)"
            self.layers.value = f"{on}/{of} layers on the GPU{note}"
