"""The Parameters panel: LM Studio's sampling and load settings, bound to the session config.

>>> from lmnb.widgets.parameters import Parameters
>>> Parameters()

Every control is two-way bound to ``lmnb.get_config()`` (the ``LM`` object that ``%lm set``,
``%config LM.x = ...``, ``lmnb.configure()``, ``%%lm``, ``lmnb.chat()`` and the server all read):
moving a slider changes the kernel's default at once, and a change made anywhere else moves the
slider. The explanation under each control is the setting's help text in ``LM``, so the panel and
``%config LM`` never disagree.

Load options (context length, GPU layers, threads, flash attention) take effect when a model is
loaded; **Apply (reload)** reloads the current model with them in a background thread, with
llama.cpp's load progress. Presets (``lmnb.presets``) set all sampling controls at once. No
callback ever raises: errors show in the status lines and a rejected value puts its control back.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional

import ipywidgets as widgets

from .. import presets as _presets
from ..markup import Markup, html
from ._html import SafeHTML
from ._jobs import Jobs, Quiet
from ._pane import UI_INTERVAL, StatusPane, describe
from .controls import (
    ADVANCED_CONTROLS,
    CONTROL_WIDTH,
    DESCRIPTION_WIDTH,
    LOAD_CONTROLS,
    SAMPLING_CONTROLS,
    check_sampling,
    describe_options,
    explanation,
    load_differences,
    make_control,
    same_value,
    to_widget,
)


class Parameters(StatusPane, widgets.VBox):
    """Sampling and load settings of the session, with presets (LM Studio's settings sidebar).

    Parts, for scripts, tests and the studio:

    - ``controls``: ``{name: widget}`` for every setting (each also an attribute of the same name):
      ``temperature``, ``top_p``, ``min_p``, ``repeat_penalty``, ``presence_penalty``,
      ``frequency_penalty`` (FloatSlider), ``top_k`` (IntSlider), ``max_tokens`` (BoundedIntText),
      ``seed`` (IntText), ``n_ctx``, ``n_threads`` (BoundedIntText), ``n_gpu_layers`` (Text),
      ``flash_attn`` (Checkbox). ``explanations``: ``{name: HTML}`` shown under each control.
    - ``sampling_status`` (HTML): rejected values and settings a request would refuse.
    - Presets: ``preset`` (Dropdown; choosing one applies it), ``preset_name`` (Text) with
      ``save_button``, ``delete_button`` (off for built-ins), ``preset_status`` (HTML).
    - Load: ``apply_button`` (reloads the loaded model with the load options), ``load_hint``
      (HTML: why Apply is off, or how the loaded model differs), ``progress`` (FloatProgress
      0..1, fed by llama.cpp's load progress), ``load_status`` (HTML); ``wait()``; ``refresh()``.

    The pane follows models loaded elsewhere (``%lm load``, the Models pane) through the engine's
    model listeners.
    """

    # Errors of a callback go here unless it names another line. A config observer is guarded
    # too: `%lm set` must not fail because a panel did.
    _status_attr = "sampling_status"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from ..config import get_config

        self.add_class("lmnb-parameters")
        self._cfg = get_config()
        self._lock = threading.RLock()
        self._quiet = Quiet()  # up while the pane sets its own controls
        self._jobs = Jobs("lmnb-parameters")
        self._reloading = False
        self._rejected: set[str] = set()  # controls whose rejection the status lines show
        self._closed = False
        self._config_observers: list[tuple[Callable[[dict], None], list[str]]] = []

        def button(description: str, icon: str = "", style: str = "", tip: str = "", **kw: Any) -> widgets.Button:
            return widgets.Button(description=description, icon=icon, button_style=style, tooltip=tip,
                                  layout=widgets.Layout(width="auto"), **kw)  # fmt: skip

        # --- controls, each with its explanation underneath
        self.controls: dict[str, widgets.ValueWidget] = {}
        self._ranges: dict[str, tuple[Any, Any]] = {}  # each bounded control's own range
        self.explanations: dict[str, SafeHTML] = {}
        rows: dict[str, widgets.Widget] = {}
        for name in SAMPLING_CONTROLS + LOAD_CONTROLS:
            control = make_control(name)
            control.add_class(f"lmnb-param-{name}")
            text = explanation(name)
            control.tooltip = text
            self.controls[name] = control
            setattr(self, name, control)
            if hasattr(control, "max"):
                self._ranges[name] = (control.min, control.max)
            self._fit_range(name, getattr(self._cfg, name))  # before the value: sliders clamp
            control.value = to_widget(name, getattr(self._cfg, name))
            note = SafeHTML(
                html('<span style="color:var(--jp-ui-font-color2,#616161);font-size:0.9em;line-height:1.3">'
                     "{}</span>", text),
                layout=widgets.Layout(margin=f"-2px 0 6px calc({DESCRIPTION_WIDTH} + 8px)", width="auto"),
            )
            note.add_class("lmnb-param-help")
            self.explanations[name] = note
            rows[name] = widgets.VBox([control, note])
        # the samplers most people leave off, folded away
        self.advanced = widgets.Accordion(children=[widgets.VBox([rows[n] for n in ADVANCED_CONTROLS])],
                                          titles=("More samplers: typical, top-n σ, XTC, DRY, Mirostat",))  # fmt: skip
        self.advanced.selected_index = None
        self.advanced.add_class("lmnb-param-advanced")
        self.sampling_status = SafeHTML()

        # --- presets
        self.preset = widgets.Dropdown(
            options=[], value=None, description="preset", style={"description_width": DESCRIPTION_WIDTH},
            layout=widgets.Layout(width="24em"),
        )  # fmt: skip
        self.preset.add_class("lmnb-preset")
        self.delete_button = button("Delete", "trash", tip="Delete this preset", disabled=True)
        self.delete_button.add_class("lmnb-preset-delete")
        self.preset_name = widgets.Text(
            placeholder="name for the current settings", description="save as",
            style={"description_width": DESCRIPTION_WIDTH}, layout=widgets.Layout(width="24em"),
        )  # fmt: skip
        self.preset_name.add_class("lmnb-preset-name")
        self.save_button = button("Save", "save", tip="Save the current sampling settings as a preset")
        self.save_button.add_class("lmnb-preset-save")
        self.preset_status = SafeHTML()

        # --- load options
        self.apply_button = button("Apply (reload)", "refresh", "primary", disabled=True)
        self.apply_button.add_class("lmnb-apply")
        self.load_hint = SafeHTML()
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width=CONTROL_WIDTH))
        self.progress.layout.visibility = "hidden"
        self.load_status = SafeHTML()

        self.children = [
            SafeHTML(Markup(
                "<b>Sampling</b> &middot; session defaults for <code>%%lm</code>, <code>lmnb.chat()</code> "
                "and the server (<code>%config LM</code>)"
            )),
            widgets.HBox([self.preset, self.delete_button]),
            widgets.HBox([self.preset_name, self.save_button]),
            self.preset_status,
            *(rows[n] for n in SAMPLING_CONTROLS if n not in ADVANCED_CONTROLS),
            self.advanced,
            self.sampling_status,
            SafeHTML(Markup("<b>Load options</b> &middot; used when a model is loaded")),
            *(rows[n] for n in LOAD_CONTROLS),
            widgets.HBox([self.apply_button, self.load_hint]),
            self.progress,
            self.load_status,
        ]

        # --- binding: widget -> config ...
        for name, control in self.controls.items():
            control.observe(self._guard(lambda change, n=name: self._on_control(n, change["new"])), "value")
        # ... and config -> widget (removed again by close())
        self._observe_config(self._guard(self._on_config), list(self.controls))
        self._observe_config(self._guard(lambda _c: self._sync_preset(), self.preset_status), list(_presets.FIELDS))

        self.preset.observe(self._guard(self._on_preset, self.preset_status), "value")
        self.save_button.on_click(self._guard(lambda _b: self.save_preset(), self.preset_status))
        self.delete_button.on_click(self._guard(lambda _b: self.delete_preset(), self.preset_status))
        self.apply_button.on_click(self._guard(lambda _b: self.reload(), self.load_status))

        self._refresh_presets()
        self._show_sampling_problems()
        self.refresh()
        from .. import api

        api.get_engine().model_listeners.append(self._on_model)

    # --------------------------------------------------------------------------------------------
    # Plumbing
    # --------------------------------------------------------------------------------------------
    def _observe_config(self, handler: Callable[[dict], None], names: list[str]) -> None:
        self._cfg.observe(handler, names=names)
        self._config_observers.append((handler, names))

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> threading.Thread:
        return self._jobs.start(self._guard(fn, self.load_status), *args)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a reload started here is over; ``False`` on timeout."""
        return self._jobs.wait(timeout)

    def close(self) -> None:
        """Detach from the config (every observer this panel added) and close the panel's widgets."""
        if self._closed:
            return
        self._closed = True
        from .. import api

        listeners = api.get_engine().model_listeners
        if self._on_model in listeners:
            listeners.remove(self._on_model)
        for handler, names in self._config_observers:
            self._cfg.unobserve(handler, names=names)
        self._config_observers.clear()
        for w in self._own_widgets():
            w.close()
        super().close()

    def _own_widgets(self) -> list[widgets.Widget]:
        out: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            out.append(w)
            stack.extend(getattr(w, "children", ()))
        return out

    # --------------------------------------------------------------------------------------------
    # Binding
    # --------------------------------------------------------------------------------------------
    def _fit_range(self, name: str, value: Any) -> None:
        """Widen a slider's (or bounded box's) range to hold ``value``, back to its own range otherwise.

        A control that clamped a value set elsewhere (``%lm set temperature=3``) would show a value
        the kernel does not use, and write the clamped value back at the next touch.
        """
        if name not in self._ranges or not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        control, (lo, hi) = self.controls[name], self._ranges[name]
        lo, hi = min(lo, value), max(hi, value)
        # the order keeps min <= max at every step (ipywidgets refuses anything else)
        if lo > control.max:
            control.max, control.min = hi, lo
        else:
            control.min, control.max = lo, hi

    def _on_control(self, name: str, value: Any) -> None:
        """A control changed (the user): make it the session default, or say why not and put it back."""
        if self._quiet or self._closed:
            return
        current = getattr(self._cfg, name)
        if name == "n_gpu_layers":
            value = value.strip()
            if value == str(current):
                return
        elif same_value(value, current):
            return
        status = self.load_status if name in LOAD_CONTROLS else self.sampling_status
        try:
            if name in SAMPLING_CONTROLS:
                check_sampling(name, value)
            from ..config import configure

            configure(**{name: value})
        except Exception as e:  # TraitError, ValueError: the config's or the engine's own message
            self._set_control(name, getattr(self._cfg, name))
            self._say(f"{name} not changed: {describe(e)}", "error", status)
            self._rejected.add(name)
            return
        if name in SAMPLING_CONTROLS:
            self._show_sampling_problems()
        elif self._rejected & set(LOAD_CONTROLS):
            self._say("", "info", self.load_status)  # the error is outdated (a reload's outcome stays shown)
        self._rejected -= set(LOAD_CONTROLS) if name in LOAD_CONTROLS else set(SAMPLING_CONTROLS)

    def _set_control(self, name: str, value: Any) -> None:
        control = self.controls[name]
        with self._quiet():
            self._fit_range(name, value)
            control.value = to_widget(name, value)

    def _on_config(self, change: dict) -> None:
        """The config changed (a control here, ``%lm set``, ``lmnb.configure``, ``%config LM.x``, a preset)."""
        if self._closed:
            return
        name = change["name"]
        self._set_control(name, change["new"])
        if name in SAMPLING_CONTROLS:
            self._show_sampling_problems()
        else:
            self.refresh()

    def _show_sampling_problems(self) -> None:
        """Say which current settings a request would refuse (the config takes any number: ``%lm set
        temperature=-1`` is accepted there and only fails at the next generation)."""
        problems = []
        for name in SAMPLING_CONTROLS:
            try:
                check_sampling(name, getattr(self._cfg, name))
            except ValueError as e:
                problems.append(str(e))
        if problems:
            self._say("Requests will fail until this is fixed: " + "; ".join(problems), "warn")
        else:
            self._say("")

    # --------------------------------------------------------------------------------------------
    # Presets
    # --------------------------------------------------------------------------------------------
    def _refresh_presets(self, select: Optional[str] = None) -> None:
        """List the presets again; select ``select`` (else the one matching the config, if any)."""
        user, problem = _presets.load_user()
        names = [*_presets.BUILTIN, *user]
        with self._quiet():
            self.preset.options = names
            self.preset.value = select if select in names else None
        if select is None:
            self._sync_preset()
        self._update_delete()
        if problem:
            self._say(problem, "warn", self.preset_status)

    def _sync_preset(self) -> None:
        """Show the preset the current settings match (blank once a control moves away from it)."""
        if self._closed:
            return
        shown = self.preset.value
        values = _presets.current_values()
        user, _ = _presets.load_user()
        everything = {**_presets.BUILTIN, **user}
        if shown in everything and _presets.fits(everything[shown], values):
            return  # still true (a user preset equal to a built-in keeps its own name)
        match = next((name for name, p in everything.items() if _presets.fits(p, values)), None)
        with self._quiet():
            self.preset.value = match if match in self.preset.options else None
        self._update_delete()

    def _update_delete(self) -> None:
        name = self.preset.value
        if name is None:
            self.delete_button.disabled, self.delete_button.tooltip = True, "Choose a preset you saved to delete it"
        elif _presets.is_builtin(name):
            self.delete_button.disabled, self.delete_button.tooltip = True, f"{name} is built in: it cannot be deleted"
        else:
            self.delete_button.disabled, self.delete_button.tooltip = False, f"Delete the preset {name}"

    def _on_preset(self, change: dict) -> None:
        self._update_delete()
        if self._quiet or change["new"] is None:
            return
        self.apply_preset(change["new"])

    def apply_preset(self, name: str) -> dict:
        """Apply preset ``name`` (the controls move through the config binding); returns its values."""
        values = _presets.apply(name)
        with self._quiet():
            self.preset.value = name if name in self.preset.options else self.preset.value
        self._update_delete()
        shown = " · ".join(f"{k} {v}" for k, v in values.items())
        self._say(f"Applied {name}: {shown}", "ok", self.preset_status)
        return values

    def save_preset(self, name: Optional[str] = None) -> dict:
        """Save the current sampling settings as preset ``name`` (default: the name box's text)."""
        name = (self.preset_name.value if name is None else name).strip()
        values = _presets.save(name)
        self._refresh_presets(select=name)
        self.preset_name.value = ""
        self._say(f"Saved {name} to {_presets.user_presets_path()}.", "ok", self.preset_status)
        return values

    def delete_preset(self, name: Optional[str] = None) -> None:
        """Delete the user preset ``name`` (default: the selected one)."""
        name = self.preset.value if name is None else name
        if name is None:
            self._say("Choose a preset to delete.", "warn", self.preset_status)
            return
        _presets.delete(name)
        self._refresh_presets()
        self._say(f"Deleted {name}.", "ok", self.preset_status)

    # --------------------------------------------------------------------------------------------
    # Load options and reload
    # --------------------------------------------------------------------------------------------
    def _on_model(self, info: Any) -> None:  # engine listener: a model was loaded or unloaded elsewhere
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a listener must never break loading
            pass

    def refresh(self) -> None:
        """Update Apply and the hint for the model loaded now."""
        from .. import api

        if self._closed:
            return
        with self._lock:
            reloading = self._reloading
        engine = api.get_engine()
        st = engine.status()
        if reloading:
            self.apply_button.disabled, hint, kind = True, "Reloading…", "info"
        elif not st.loaded or st.options is None:
            self.apply_button.disabled = True
            hint, kind = "No model is loaded: these options apply to the next %lm load.", "info"
        else:
            self.apply_button.disabled = False
            diff = load_differences(self._cfg, st.options, st.model)
            if diff:
                hint = f"{st.model.name} is loaded with {', '.join(diff)}: Apply reloads it with these options."
                kind = "warn"
            else:
                hint, kind = f"{st.model.name} is loaded with these options.", "info"
        self.apply_button.tooltip = hint if self.apply_button.disabled else "Reload the model with these options"
        self._say(hint, kind, self.load_hint)

    def reload(self) -> Optional[threading.Thread]:
        """Reload the loaded model with the load options, in a background thread (``wait()`` joins it).

        Options the panel does not show (batch size, parallel sequences, mmap, seed, chat template)
        stay as the model was loaded. Returns the thread, or ``None`` when nothing can be reloaded.
        """
        from .. import api

        engine = api.get_engine()
        with self._lock:
            if self._reloading:
                self._say("A reload is running already: wait for it.", "warn", self.load_status)
                return None
            st = engine.status()
            if not st.loaded or st.options is None:
                self._say("No model is loaded, so there is nothing to reload.", "warn", self.load_status)
                self.refresh()
                return None
            self._reloading = True
        info, loaded, cfg = st.model, st.options, self._cfg
        # the pane's load options; the rest (batch, parallel, mmap, seed, template) as loaded
        options = {**dataclasses.asdict(loaded), **{name: getattr(cfg, name) for name in LOAD_CONTROLS}}
        self.progress.value, self.progress.bar_style = 0.0, ""
        self.progress.layout.visibility = "visible"
        self._say(f"Reloading {info.name}…", "info", self.load_status)
        self.refresh()
        return self._spawn(self._reload, info, options)

    def _reload(self, info: Any, options: dict) -> None:
        from .. import api

        last = [0.0]

        def progress(fraction: float) -> None:  # on the engine's thread, inside llama.cpp's load
            now = time.monotonic()
            if fraction >= 1.0 or now - last[0] >= UI_INTERVAL:
                last[0] = now
                self.progress.value = min(max(fraction, 0.0), 1.0)

        t0 = time.monotonic()
        try:
            api.load(info.path, progress=progress, download=False, **options)
        except Exception as e:  # LoadError (out of memory, bad option), ValueError
            self.progress.bar_style = "danger"
            gone = "" if api.get_engine().loaded else " No model is loaded now."
            self._say(f"Could not reload {info.name}: {describe(e)}.{gone}", "error", self.load_status)
        else:
            self.progress.bar_style = "success"
            st = api.get_engine().status()
            took = time.monotonic() - t0
            self._say(f"Reloaded {info.name} in {took:.1f} s · {describe_options(st.options)}", "ok", self.load_status)
        finally:
            with self._lock:
                self._reloading = False
            self.refresh()

