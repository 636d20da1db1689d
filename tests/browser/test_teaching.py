"""The next-token explorer in a real JupyterLab: move the temperature slider and the bars change;
click Sample and the text grows."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext lmnb\nimport lmnb\nlmnb.load('smollm2', n_ctx=2048)",
    "explorer = lmnb.explore('Once upon a time, a small robot', seed=1, temperature=0.5)\nexplorer",
    "print(explorer.temperature.value, len(explorer.tokens))",
]


def test_explorer_reacts_to_sliders_and_sample(open_notebook):
    nb = open_notebook(CELLS)
    nb.run_cell(0, timeout=120)
    nb.run_cell(1, timeout=60)
    pane = nb.output(1).locator(".lmnb-explorer")
    nb.wait_for(pane, timeout=30)
    chart = pane.locator(".lmnb-explorer-chart")
    bars = chart.locator(".lmnb-bar")
    nb.wait_for(lambda: bars.count() == 15, timeout=30, message="no bars drawn")
    before = chart.inner_html()

    handle = pane.locator(".lmnb-explorer-temperature .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(10):  # 0.5 -> 1.0
        handle.press("ArrowRight")
    nb.wait_for(lambda: chart.inner_html() != before, timeout=20, message="the bars did not change")
    # the filled bars now follow temperature 1.0: the favourite lost some of its share
    first = lambda html: float(html.split('data-p="')[1].split('"')[0])  # noqa: E731
    assert first(chart.inner_html()) < first(before)
    nb.screenshot("explorer-temperature", pane)

    added = pane.locator(".lmnb-explorer-added")
    assert added.inner_text() == ""
    pane.get_by_role("button", name="Sample").click()
    nb.wait_for(lambda: added.inner_text() != "", timeout=20, message="Sample did not add a token")
    one = added.inner_text()
    pane.get_by_role("button", name="Sample").click()
    nb.wait_for(lambda: len(added.inner_text()) > len(one), timeout=20, message="the text did not grow")
    nb.run_cell(2, timeout=30)
    temperature, n = nb.output_text(2).split()
    assert float(temperature) == pytest.approx(1.0) and int(n) == 2
    nb.screenshot("explorer-sampled", pane)
    assert not nb.log.errors(), nb.log.errors()
