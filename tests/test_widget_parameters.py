"""The Parameters panel (lmnb.widgets.parameters) and sampling presets (lmnb.presets), driven from
Python the way a user clicks them, against the real bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings

import pytest

pytest.importorskip("ipywidgets")

import lmnb  # noqa: E402
from lmnb import presets  # noqa: E402
from lmnb.config import LM, get_config  # noqa: E402
from lmnb.widgets import parameters as parameters_module  # noqa: E402
from lmnb.widgets.parameters import LOAD_CONTROLS, SAMPLING_CONTROLS, Parameters  # noqa: E402

CONTROLLED = SAMPLING_CONTROLS + LOAD_CONTROLS


@pytest.fixture(autouse=True)
def restore_config(tmp_path):
    """Every test gets its own presets file; every setting a test changes is put back afterwards."""
    cfg = get_config()
    names = (*CONTROLLED, "stop", "presets_path")
    before = {name: getattr(cfg, name) for name in names}
    cfg.presets_path = str(tmp_path / "presets.json")
    yield cfg
    for name, value in before.items():
        setattr(cfg, name, value)


@pytest.fixture
def panel():
    w = Parameters()
    yield w
    w.close()


def restore_engine(smollm2_path: str) -> None:
    """Back to the shared state other test files expect: SmolLM2 loaded with n_ctx=2048."""
    lmnb.load(smollm2_path, n_ctx=2048)  # the config is back to its defaults first (see the callers)


def text_of(html_widget) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", html_widget.value))


def handler_count(cfg) -> int:
    return sum(len(handlers) for by_type in cfg._trait_notifiers.values() for handlers in by_type.values())


# ------------------------------------------------------------------------------------------------
# The panel shows the config
# ------------------------------------------------------------------------------------------------
def test_controls_show_the_config_with_its_explanations(panel):
    cfg = get_config()
    for name in CONTROLLED:
        control = panel.controls[name]
        shown = control.value
        assert (shown == str(getattr(cfg, name))) if name == "n_gpu_layers" else (shown == getattr(cfg, name)), name
        assert f"lmnb-param-{name}" in control._dom_classes
        assert getattr(panel, name) is control
        # the explanation is the config's help text: one source of truth, readable as prose
        help_text = LM.class_traits()[name].help
        assert text_of(panel.explanations[name]) == help_text and len(help_text) > 30, name
    assert "lmnb-parameters" in panel._dom_classes
    assert "lmnb-apply" in panel.apply_button._dom_classes
    assert "lmnb-preset" in panel.preset._dom_classes
    assert (panel.temperature.min, panel.temperature.max, panel.temperature.step) == (0.0, 2.0, 0.05)
    assert (panel.top_k.min, panel.top_k.max) == (0, 200)
    assert (panel.presence_penalty.min, panel.frequency_penalty.max) == (-2.0, 2.0)
    assert "-1 = until" in text_of(panel.explanations["max_tokens"])
    assert list(panel.preset.options[:3]) == ["Precise", "Balanced", "Creative"]


def test_slider_changes_the_kernel_default_and_generation_uses_it(panel, loaded):
    cfg = get_config()
    panel.temperature.value = 0.3
    panel.top_k.value = 12
    panel.seed.value = 1234
    assert (cfg.temperature, cfg.top_k, cfg.seed) == (0.3, 12, 1234)
    first = lmnb.chat("hi", max_tokens=3)
    assert (first.params.temperature, first.params.top_k, first.params.seed) == (0.3, 12, 1234)
    assert lmnb.chat("hi", max_tokens=3).text == first.text  # the fixed seed reproduces the reply
    panel.max_tokens.value = 2
    capped = lmnb.chat("hi")  # no max_tokens given: the slider's value is the default
    assert capped.params.max_tokens == 2 and capped.usage.completion_tokens <= 2
    panel.seed.value = -1  # back to a random seed per request
    assert cfg.seed == -1 and lmnb.chat("hi", max_tokens=2).params.seed >= 0
    assert panel.sampling_status.value == ""


def test_config_changes_move_the_controls(panel, shell):
    lmnb.configure(temperature=0.25, n_ctx=1536, n_gpu_layers=0, flash_attn=True)
    assert panel.temperature.value == 0.25
    assert panel.n_ctx.value == 1536 and panel.n_gpu_layers.value == "0" and panel.flash_attn.value is True
    shell.run_line_magic("lm", "set top_p=0.5 repeat_penalty=1.3")
    assert panel.top_p.value == 0.5 and panel.repeat_penalty.value == 1.3
    shell.run_line_magic("config", "LM.top_k = 5")
    assert get_config().top_k == 5 and panel.top_k.value == 5
    lmnb.configure(n_gpu_layers="max")
    assert panel.n_gpu_layers.value == "max"


def test_out_of_range_config_values_are_shown_as_they_are(panel):
    from traitlets import TraitError

    cfg = get_config()
    lmnb.configure(top_k=500)
    # the slider widens instead of clamping (which would show, and later write back, another value)
    assert panel.top_k.value == 500 and cfg.top_k == 500
    assert panel.sampling_status.value == ""  # in range for the engine, only outside the slider's
    # the config checks the declared range itself, with the message every surface gives
    with pytest.raises(TraitError, match=r"temperature=-0.5: must be in \[0, 2\]"):
        lmnb.configure(temperature=-0.5)
    assert cfg.temperature == panel.temperature.value != -0.5
    lmnb.configure(temperature=0.7, top_k=40)
    assert (panel.temperature.min, panel.temperature.max, panel.top_k.max) == (0.0, 2.0, 200)
    assert panel.sampling_status.value == ""


def test_rejected_values_show_the_error_and_put_the_control_back(panel):
    cfg = get_config()
    before = {name: getattr(cfg, name) for name in CONTROLLED}
    panel.max_tokens.value = 0
    assert panel.max_tokens.value == before["max_tokens"] and cfg.max_tokens == before["max_tokens"]
    assert "max_tokens=0" in text_of(panel.sampling_status) and "-1" in text_of(panel.sampling_status)
    panel.seed.value = 2**64
    assert panel.seed.value == before["seed"] and cfg.seed == before["seed"]
    assert "seed=" in text_of(panel.sampling_status)
    panel.n_gpu_layers.value = "lots"
    assert panel.n_gpu_layers.value == str(before["n_gpu_layers"]) and cfg.n_gpu_layers == before["n_gpu_layers"]
    assert "'auto' or 'max'" in text_of(panel.load_status)
    panel.n_gpu_layers.value = " 7 "  # accepted: the config turns it into a number
    assert cfg.n_gpu_layers == 7 and panel.n_gpu_layers.value == "7" and panel.load_status.value == ""
    panel.temperature.value = 0.55  # a good value clears the error
    assert cfg.temperature == 0.55 and panel.sampling_status.value == ""


# ------------------------------------------------------------------------------------------------
# Presets (the module)
# ------------------------------------------------------------------------------------------------
def test_builtin_presets_are_valid_and_balanced_is_the_default():
    assert list(presets.presets())[:3] == ["Precise", "Balanced", "Creative"]
    defaults = LM()
    for name, values in presets.BUILTIN.items():
        assert "seed" not in values and set(values) <= set(presets.FIELDS), name
        assert presets.check_values(values) == values
    assert presets.BUILTIN["Balanced"] == {k: getattr(defaults, k) for k in presets.BUILTIN["Balanced"]}
    assert presets.BUILTIN["Precise"]["temperature"] < presets.BUILTIN["Balanced"]["temperature"]
    assert presets.BUILTIN["Creative"]["temperature"] > presets.BUILTIN["Balanced"]["temperature"]


def test_apply_sets_the_session_defaults(loaded):
    cfg = get_config()
    values = presets.apply("Precise")
    assert all(getattr(cfg, k) == v for k, v in values.items())
    assert lmnb.chat("hi", max_tokens=2).params.temperature == 0.2
    presets.apply("creative")  # names are found case-insensitively
    assert cfg.top_k == 0 and cfg.temperature == 1.1
    with pytest.raises(ValueError, match="unknown preset 'Nope'.*Precise"):
        presets.apply("Nope")


def test_save_apply_delete_persist(restore_config):
    cfg = restore_config
    path = presets.user_presets_path()
    assert path == cfg.presets_path and not os.path.exists(path)
    lmnb.configure(temperature=0.45, top_k=33, stop=["###"])
    stored = presets.save("notes")  # default: the current settings
    assert stored["temperature"] == 0.45 and stored["top_k"] == 33 and stored["stop"] == ["###"]
    assert "seed" not in stored
    presets.save("short", {"temperature": 0, "max_tokens": 64})
    on_disk = json.load(open(path))["presets"]  # re-read the file: it is what a new kernel sees
    assert on_disk["notes"]["top_k"] == 33 and on_disk["short"] == {"temperature": 0.0, "max_tokens": 64}
    assert list(presets.presets()) == ["Precise", "Balanced", "Creative", "notes", "short"]
    assert [f for f in os.listdir(os.path.dirname(path)) if f != "presets.json"] == []  # no temp file left

    lmnb.configure(temperature=0.9, top_k=40, stop=[])
    presets.apply("notes")
    assert (cfg.temperature, cfg.top_k, cfg.stop) == (0.45, 33, ["###"])
    presets.save("notes", {"temperature": 0.1})  # replacing one's own preset is allowed
    assert json.load(open(path))["presets"]["notes"] == {"temperature": 0.1}

    presets.delete("notes")
    assert list(json.load(open(path))["presets"]) == ["short"]
    with pytest.raises(ValueError, match="unknown preset 'notes'"):
        presets.delete("notes")


def test_default_presets_file_is_in_the_user_config_dir(restore_config):
    restore_config.presets_path = ""
    path = presets.user_presets_path()
    # conftest points XDG_CONFIG_HOME at a scratch dir: the user's real config is never touched
    assert path == os.path.join(os.environ["XDG_CONFIG_HOME"], "lmnb", "presets.json")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: presets.save("Balanced"), "built-in preset and cannot be overwritten"),
        (lambda: presets.save(" precise "), "built-in preset and cannot be overwritten"),
        (lambda: presets.delete("Creative"), "built-in preset and cannot be deleted"),
        (lambda: presets.save("   "), "needs a name"),
        (lambda: presets.save("a\nb"), "control characters"),
        (lambda: presets.save("x" * 65), "at most 64"),
        (lambda: presets.save("hot", {"temperature": -1}), "temperature=-1.0: must be in \\[0, 2\\]"),
        (lambda: presets.save("p", {"top_p": 1.5}), r"top_p=1.5: must be in \[0, 1\]"),
        (lambda: presets.save("k", {"top_k": 2.5}), "whole number"),
        (lambda: presets.save("s", {"seed": 1}), "seed is not part of a preset"),
        (lambda: presets.save("u", {"temprature": 1}), "unknown preset setting"),
        (lambda: presets.save("t", {"temperature": "hot"}), "expected a number"),
        (lambda: presets.save("e", {}), "at least one"),
    ],
)
def test_bad_names_and_values_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert not os.path.exists(presets.user_presets_path())


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"presets": 3}'])
def test_a_corrupt_presets_file_is_reported_and_builtins_still_work(content):
    path = presets.user_presets_path()
    with open(path, "w") as f:
        f.write(content)
    with pytest.warns(presets.PresetsFileWarning, match=path):
        names = list(presets.presets())
    assert names == ["Precise", "Balanced", "Creative"]
    assert presets.apply("Precise")["temperature"] == 0.2 and get_config().temperature == 0.2
    with pytest.raises(ValueError, match="nothing was saved") as err:
        presets.save("mine")
    assert path in str(err.value)
    with pytest.raises(ValueError, match="nothing was deleted"):
        presets.delete("mine")
    assert open(path).read() == content  # the user's file is never overwritten


def test_an_unreadable_file_and_invalid_entries_are_reported(restore_config, tmp_path):
    folder = tmp_path / "a-directory"
    folder.mkdir()
    restore_config.presets_path = str(folder)  # open() fails: IsADirectoryError
    with pytest.warns(presets.PresetsFileWarning, match="Could not read"):
        assert list(presets.presets()) == ["Precise", "Balanced", "Creative"]
    restore_config.presets_path = str(tmp_path / "p.json")
    (tmp_path / "p.json").write_text(json.dumps({"presets": {"good": {"top_k": 3}, "bad": {"top_p": 7}}}))
    with pytest.warns(presets.PresetsFileWarning, match="'bad'"):
        assert "good" in presets.presets() and "bad" not in presets.presets()
    presets.save("new", {"min_p": 0.2})  # a hand-edited entry this version cannot use is kept
    assert set(json.loads((tmp_path / "p.json").read_text())["presets"]) == {"good", "bad", "new"}


# ------------------------------------------------------------------------------------------------
# Presets (the panel)
# ------------------------------------------------------------------------------------------------
def test_choosing_a_preset_moves_the_sliders(panel):
    cfg = get_config()
    lmnb.configure(**presets.BUILTIN["Balanced"])
    assert panel.preset.value == "Balanced"  # the panel shows which preset the settings match
    assert panel.delete_button.disabled  # built-ins cannot be deleted
    panel.preset.value = "Creative"
    assert panel.temperature.value == 1.1 and panel.top_k.value == 0 and cfg.min_p == 0.02
    assert "Applied Creative" in text_of(panel.preset_status)
    panel.temperature.value = 1.0  # no preset matches any more
    assert panel.preset.value is None and cfg.temperature == 1.0
    panel.preset.value = "Precise"
    assert cfg.temperature == 0.2 and panel.top_p.value == 0.9 and panel.preset.value == "Precise"


def test_save_and_delete_from_the_panel(panel):
    path = presets.user_presets_path()
    panel.temperature.value = 0.65
    panel.preset_name.value = "  my style "
    panel.save_button.click()
    assert json.load(open(path))["presets"]["my style"]["temperature"] == 0.65
    assert panel.preset.value == "my style" and "my style" in panel.preset.options
    assert not panel.delete_button.disabled and panel.preset_name.value == ""
    assert f"Saved my style to {path}" in text_of(panel.preset_status)

    other = Parameters()  # a new panel (or kernel) reads the file
    try:
        assert "my style" in other.preset.options and other.preset.value == "my style"
    finally:
        other.close()

    panel.preset_name.value = "Balanced"
    panel.save_button.click()  # refused, shown, nothing raised
    assert "cannot be overwritten" in text_of(panel.preset_status)

    panel.preset.value = "my style"
    panel.delete_button.click()
    assert json.load(open(path))["presets"] == {}
    assert "my style" not in panel.preset.options and "Deleted my style" in text_of(panel.preset_status)


def test_panel_reports_a_corrupt_presets_file():
    with open(presets.user_presets_path(), "w") as f:
        f.write("{oops")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the panel shows the problem; it does not warn or raise
        w = Parameters()
    try:
        assert "not valid JSON" in text_of(w.preset_status)
        assert list(w.preset.options) == ["Precise", "Balanced", "Creative"]
        w.preset.value = "Precise"
        assert get_config().temperature == 0.2
    finally:
        w.close()


# ------------------------------------------------------------------------------------------------
# Load options and Apply (reload)
# ------------------------------------------------------------------------------------------------
def test_apply_reloads_the_model_with_the_new_options(panel, loaded, smollm2_path, monkeypatch):
    # every progress report reaches the bar (the panel normally keeps it to ~10 updates a second,
    # and the 98 MB model loads in a fraction of that from the page cache)
    monkeypatch.setattr(parameters_module, "UI_INTERVAL", 0.0)
    try:
        assert lmnb.status().options.n_ctx == 2048
        panel.n_ctx.value = 1024
        assert get_config().n_ctx == 1024
        panel.refresh()
        hint = text_of(panel.load_hint)
        assert "context 2048 (here 1024)" in hint and "Apply reloads" in hint and not panel.apply_button.disabled
        seen: list[float] = []
        panel.progress.observe(lambda c: seen.append(c["new"]), "value")
        t = panel.reload()
        assert isinstance(t, threading.Thread) and t is not threading.current_thread()  # kernel stays free
        assert panel.apply_button.disabled  # no second reload while this one runs
        assert panel.wait(120)
        st = lmnb.status()
        assert st.loaded and st.options.n_ctx == 1024 and st.model.path == os.path.abspath(smollm2_path)
        assert panel.progress.value == 1.0 and panel.progress.bar_style == "success"
        assert len(set(seen)) > 2  # fed by llama.cpp's progress callback, not just set at the end
        status = text_of(panel.load_status)
        assert status.startswith(f"Reloaded {st.model.name} in ") and "context 1024" in status
        assert not panel.apply_button.disabled and "loaded with these options" in text_of(panel.load_hint)
        assert lmnb.chat("hi", max_tokens=2).usage.completion_tokens >= 1
    finally:
        get_config().n_ctx = LM().n_ctx
        restore_engine(smollm2_path)


def test_apply_button_click_and_a_failing_reload(panel, loaded, smollm2_path, tmp_path):
    import shutil

    try:
        panel.n_threads.value = 1
        panel.apply_button.click()
        assert panel.wait(120)
        assert lmnb.status().options.n_threads == 1 and "1 threads" in text_of(panel.load_status)
        # The loaded file disappears (deleted, an unmounted disk): Apply says why it cannot reload,
        # and the model in memory stays usable.
        copy = shutil.copy(smollm2_path, tmp_path / "copy.gguf")
        lmnb.load(copy, n_ctx=2048)
        os.remove(copy)
        panel.refresh()
        panel.apply_button.click()
        assert panel.wait(120)
        status = text_of(panel.load_status)
        assert status.startswith("Could not reload") and "copy.gguf" in status and "No model" not in status
        assert panel.progress.bar_style == "danger" and not panel.apply_button.disabled
        assert lmnb.status().loaded and lmnb.chat("hi", max_tokens=2).usage.completion_tokens >= 1
    finally:
        cfg = get_config()
        cfg.n_ctx, cfg.n_threads = LM().n_ctx, LM().n_threads
        restore_engine(smollm2_path)
    assert lmnb.status().options.n_ctx == 2048


def test_apply_is_off_without_a_model_and_on_once_one_loads(loaded, smollm2_path):
    lmnb.unload()
    w = Parameters()
    try:
        assert w.apply_button.disabled
        assert "No model is loaded" in text_of(w.load_hint) and "No model" in w.apply_button.tooltip
        assert w.reload() is None and "nothing to reload" in text_of(w.load_status)
        lmnb.load(smollm2_path, n_ctx=2048)  # elsewhere, as `%lm load` in another cell
        deadline = time.monotonic() + 10
        while w.apply_button.disabled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not w.apply_button.disabled and "is loaded with" in text_of(w.load_hint)
    finally:
        w.close()
        restore_engine(smollm2_path)


# ------------------------------------------------------------------------------------------------
# close()
# ------------------------------------------------------------------------------------------------
def test_close_removes_every_config_observer():
    cfg = get_config()
    before = handler_count(cfg)
    w = Parameters()
    assert handler_count(cfg) > before
    w.close()
    assert handler_count(cfg) == before
    lmnb.configure(temperature=0.42)  # a closed panel no longer follows (nor breaks) the config
    assert w.temperature.value != 0.42 and cfg.temperature == 0.42
    assert w._on_model not in lmnb.get_engine().model_listeners  # nor the loaded model
    w.close()  # twice is harmless
