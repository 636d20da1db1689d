"""`lmnb.studio()` / `%lm ui` / `%lm preset`, and progress where lmnb waits (real model)."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.widgets import ticker as _ticker
from lmnb.widgets.studio import TABS, Studio


def widget_ids(cap) -> list[str]:
    return [o.data["application/vnd.jupyter.widget-view+json"]["model_id"]
            for o in cap.outputs if "application/vnd.jupyter.widget-view+json" in o.data]  # fmt: skip


def test_studio_tabs_panes_and_one_per_kernel(loaded):
    s = lmnb.studio()
    try:
        assert isinstance(s, Studio) and "lmnb-studio" in s._dom_classes
        assert s.tabs.titles == TABS
        assert [type(p).__name__ for p in s.tabs.children] == ["Chat", "Documents", "Models", "Parameters", "System",
                                                               "Server", "Logs"]  # fmt: skip
        assert s.chat.model_name == lmnb.status().model.name
        s.select("parameters")
        assert s.tabs.selected_index == 3
        with pytest.raises(ValueError, match="no pane"):
            s.select("Settings")
        # running the cell again shows the same studio instead of a second one polling in the background
        assert lmnb.studio() is s
        other = lmnb.studio(conversation="other")
        assert other is not s and s.closed
        s = other
    finally:
        s.close()
    assert s.closed
    assert _ticker.subscribers() == 0 and _ticker.wait_stopped(5)
    assert s.chat._on_conversation not in lmnb.conversation("other").listeners


def test_lm_ui_shows_the_studio_or_one_pane(shell):
    with capture_output() as cap:
        shell.run_line_magic("lm", "ui")
    s = lmnb.studio()
    try:
        assert widget_ids(cap) == [s.model_id]
        with capture_output() as cap:
            shell.run_line_magic("lm", "ui chat")
        (chat_id,) = widget_ids(cap)
        from ipywidgets.widgets.widget import _instances

        chat = _instances[chat_id]
        assert type(chat).__name__ == "Chat" and chat is not s.chat
        chat.close()
        with pytest.raises(Exception, match="invalid choice"):
            shell.run_line_magic("lm", "ui settings")
    finally:
        s.close()


def test_lm_preset_lists_applies_saves_and_deletes(shell, tmp_path):
    cfg = lmnb.get_config()
    saved = {name: getattr(cfg, name) for name in ("presets_path", "temperature", "top_k", "top_p", "min_p")}
    cfg.presets_path = str(tmp_path / "presets.json")
    try:
        with capture_output() as cap:
            shell.run_line_magic("lm", "preset")
        assert "Precise (built-in)" in cap.stdout and "Creative (built-in)" in cap.stdout
        with capture_output():
            shell.run_line_magic("lm", "preset Precise")
        precise = lmnb.presets.BUILTIN["Precise"]
        assert cfg.temperature == precise["temperature"] and cfg.top_k == precise["top_k"]
        lmnb.configure(temperature=0.33)
        with capture_output():
            shell.run_line_magic("lm", "preset --save mine")
        lmnb.configure(temperature=1.0)
        with capture_output():
            shell.run_line_magic("lm", "preset mine")
        assert cfg.temperature == 0.33
        with capture_output():
            shell.run_line_magic("lm", "preset --delete mine")
        with pytest.raises(Exception, match="mine"):
            shell.run_line_magic("lm", "preset mine")
        with pytest.raises(Exception, match="built-in"):
            shell.run_line_magic("lm", "preset --delete Precise")
    finally:
        for name, value in saved.items():
            setattr(cfg, name, value)


def test_long_prompt_reports_reading_progress_then_text(loaded):
    prompt = "Summarise: " + "The river runs to the sea and the sea is wide. " * 120
    req = lmnb.chat(prompt, stream=True, max_tokens=3, temperature=0)
    events = list(req.events())
    kinds = [k for k, _ in events]
    progress = [p for k, p in events if k == "progress"]
    assert kinds.index("delta") > kinds.index("progress")  # progress comes before the first token
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1][0] == progress[-1][1]
    # plain iteration gives only the text
    again = lmnb.chat(prompt, stream=True, max_tokens=3, temperature=0)
    assert "".join(again) == again.result().text == req.result().text


def test_short_prompt_has_no_progress_events(loaded):
    req = lmnb.chat("Hi", stream=True, max_tokens=2, temperature=0)
    assert all(kind == "delta" for kind, _ in req.events())
    assert req.prompt_progress is None


def test_lm_load_shows_a_progress_bar(shell, smollm2_path):
    with capture_output() as cap:
        shell.run_line_magic("lm", f"load {smollm2_path} --ctx 2048")
    html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
    assert html and "<progress" in html[0]
    assert "Loaded" in cap.outputs[-1].data["text/plain"] or any("Loaded" in o.data.get("text/plain", "")
                                                                    for o in cap.outputs)  # fmt: skip
