"""The Parameters pane's controls, built from the parameter table (``lmnb.params``), and the
checks and wording it shares with the other panes (an invalid value, the loaded options).
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets

from ..params import BY_NAME, LOAD, SAMPLING

DESCRIPTION_WIDTH = "10.5em"  # fits "frequency_penalty", so every control lines up
CONTROL_WIDTH = "34em"

# Every declared parameter the pane draws (lmnb.params: the table says how), in the table's order.
SAMPLING_CONTROLS: tuple[str, ...] = tuple(p.name for p in SAMPLING if p.widget)
ADVANCED_CONTROLS: tuple[str, ...] = tuple(p.name for p in SAMPLING if p.widget and p.group == "advanced")
LOAD_CONTROLS: tuple[str, ...] = tuple(p.name for p in LOAD if p.widget)
_JS_INT_MAX = 2**53 - 1  # larger integers lose precision in the browser


def explanation(name: str) -> str:
    """The one-line explanation of a setting: its help text in the ``LM`` config."""
    from ..config import LM

    return LM.class_traits()[name].help


def make_control(name: str) -> widgets.ValueWidget:
    """The input for one declared parameter, as its ``widget`` entry says (the value is set later)."""
    spec = BY_NAME[name].widget
    if spec is None:
        raise KeyError(name)
    common: dict[str, Any] = dict(
        description=name,
        style={"description_width": DESCRIPTION_WIDTH},
        layout=widgets.Layout(width=CONTROL_WIDTH),
    )
    kind, *args = spec
    # Sliders update the config when released, not on every pixel of a drag: each change notifies
    # every observer of the config (other panels, the studio), and half-dragged values mean nothing.
    if kind == "slider":
        lo, hi, step = args
        return widgets.FloatSlider(min=lo, max=hi, step=step, continuous_update=False, readout_format=".2f", **common)
    if kind == "islider":
        lo, hi, step = args
        return widgets.IntSlider(min=lo, max=hi, step=step, continuous_update=False, **common)
    if kind == "int":
        lo, hi, *step = args
        if hi > _JS_INT_MAX:
            return widgets.IntText(**common)
        return widgets.BoundedIntText(min=lo, max=hi, step=step[0] if step else 1, **common)
    if kind == "float":
        lo, hi, step = args
        return widgets.BoundedFloatText(min=lo, max=hi, step=step, **common)
    if kind == "choice":
        return widgets.Dropdown(options=list(args[0]), **common)
    if kind == "text":
        return widgets.Text(continuous_update=False, placeholder="an integer, auto or max", **common)
    if kind == "check":
        return widgets.Checkbox(indent=True, **common)
    raise ValueError(f"{name}: unknown widget kind {kind!r}")


def to_widget(name: str, value: Any) -> Any:
    return str(value) if name == "n_gpu_layers" else value


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def check_sampling(name: str, value: Any) -> None:
    """Raise ``ValueError`` (the engine's own message) when a request could not use ``name=value``."""
    from ..types import SamplingParams

    SamplingParams(**{name: value}).validate()


def load_differences(cfg: Any, loaded: Any, info: Any) -> list[str]:
    """How the loaded model's options (``status().options``) differ from the config's, in words."""
    out: list[str] = []
    want = cfg.n_ctx or (info.context_length if info is not None else 0)
    padded = -(-want // 256) * 256  # llama.cpp rounds the context up to a multiple of 256
    if want and loaded.n_ctx not in (want, padded):
        here = f"{cfg.n_ctx}" if cfg.n_ctx else f"0 = trained length {want}"
        out.append(f"context {loaded.n_ctx} (here {here})")

    def layers(v: Any) -> str:
        return "max" if v in (-1, "-1") else str(v)

    if layers(loaded.n_gpu_layers) != layers(cfg.n_gpu_layers):
        out.append(f"GPU layers {layers(loaded.n_gpu_layers)} (here {layers(cfg.n_gpu_layers)})")
    if cfg.n_threads:
        threads = cfg.n_threads
    else:
        from ..engine.model import default_threads  # what llama.cpp gets for 0

        threads = default_threads()
    if loaded.n_threads != threads:
        out.append(f"{loaded.n_threads} threads (here {threads})")
    if bool(loaded.flash_attn) != bool(cfg.flash_attn):
        out.append(f"flash attention {'on' if loaded.flash_attn else 'off'} (here {'on' if cfg.flash_attn else 'off'})")
    return out


def describe_options(opts: Any) -> str:
    """``context 4096 · GPU layers auto · 2 threads · flash attention off``."""
    return (
        f"context {opts.n_ctx} · GPU layers {opts.n_gpu_layers} · {opts.n_threads} threads · "
        f"flash attention {'on' if opts.flash_attn else 'off'}"
    )
