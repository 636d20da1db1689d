"""Smoke test of the browser harness: lmnb's magics and an ipywidget in a real JupyterLab."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext lmnb",
    "%lm load --ctx 2048",
    "%%lm -n 16 --temperature 0\nName one colour of the sky.",
    "import lmnb\nlmnb.widgets.Models()",
]


def test_lm_cell_streams_in_jupyterlab_and_widgets_render(open_notebook):
    nb = open_notebook(CELLS)

    nb.run_cell(0, timeout=60)
    nb.run_cell(1, timeout=120)
    assert "Loaded" in nb.output_text(1)

    nb.run_cell(2, timeout=120)
    outputs = nb.outputs(2)
    reply = next(o for o in outputs if o.get("output_type") == "display_data" and "lmnb" in o.get("metadata", {}))
    text = reply["data"]["text/plain"]
    assert text.strip(), outputs
    # what the user sees: the reply rendered from its Markdown (as sanitized HTML), then the stats line
    rendered = nb.output(2).locator(".jp-RenderedHTML")
    assert rendered.count() >= 2
    assert rendered.first.inner_text().strip()
    shown = nb.output_text(2)
    assert "tok/s" in shown, shown
    assert re.findall(r"[A-Za-z]{3,}", text)[0] in shown  # the reply as rendered Markdown
    assert "\u258d" not in shown  # the streaming cursor is gone once the reply is finished
    nb.screenshot("smoke-lm-cell", nb.cell(2))

    nb.run_cell(3, timeout=60)
    search = nb.output(3).locator(".lmnb-models-search input, .widget-text input[placeholder*='Hugging Face']")
    nb.wait_for(search, timeout=30)
    assert "Hugging Face" in (search.first.get_attribute("placeholder") or "")
    nb.screenshot("smoke-notebook")

    assert not nb.log.errors(), nb.log.errors()
    assert not nb.log.dialogs, nb.log.dialogs
