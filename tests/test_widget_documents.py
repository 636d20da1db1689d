"""The Documents pane and answers from a library in the chat pane, driven from Python on the real
SmolLM2 model: a folder indexed with progress and Stop, the skipped files with their reasons, a search
whose hits are marked and escaped, and the sources of the last answer.

The front end of citations ([n] with its snippet on hover, the source on click) is the chat pane's
JavaScript (js/src/cite.js); here, what it is given: the sources on the reply's message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lmnb
from lmnb.config import get_config
from lmnb.widgets.chat import Chat
from lmnb.widgets.documents import Documents, highlight
from lmnb.widgets.studio import Studio

from .docs_files import binary_named_txt, write_text
from .waiting import wait_for

FACT = "The Oslo pilot study enrolled twelve beekeepers in its first spring."
HOSTILE = "Notes on <script>window.pwned=1</script> markup found in a report."
ODD_NAME = "odd<img src=x onerror=alert(1)>.md"  # a file name is untrusted, too


@pytest.fixture
def libs(tmp_path, monkeypatch):
    """Libraries in a folder of this test's own: lmnb.docs.list() holds only what it makes."""
    monkeypatch.setattr(get_config(), "docs_dir", str(tmp_path / "libraries"))
    return tmp_path / "libraries"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    write_text(d / "pilot.md", f"# Pilot\n\n{FACT}\n\nThe weather was mild.\n")
    write_text(d / "harvest.txt", "Honey harvest fell by a third after the wet summer.\n")
    write_text(d / ODD_NAME, HOSTILE + "\n")
    binary_named_txt(d / "photo.txt")
    return d


@pytest.fixture
def pane(loaded, libs):
    p = Documents("notes")
    yield p
    p.close()
    p.wait(60)


def added(pane: Documents, folder: Path) -> Documents:
    pane.folder.value = str(folder)
    pane.add_button.click()
    assert pane.wait(120)
    return pane


def test_add_folder_shows_progress_files_and_skipped(pane, folder):
    assert "new library" in pane.summary.value
    draws: list[str] = []
    pane.progress_text.observe(lambda c: draws.append(c["new"]), "value")
    added(pane, folder)
    assert not pane.indexing and pane.progress.layout.visibility == "hidden"
    # the bar went to the end (in bytes), with files, chunks and tokens/s
    assert "100%" in draws[-1] and "4/4 files" in draws[-1], draws
    assert "chunks" in draws[-1] and "tok/s" in draws[-1], draws
    assert pane.progress.value == pane.progress.max > 4
    assert "3 added" in pane.status.value and "1 skipped" in pane.status.value, pane.status.value
    report = pane.last_report
    assert sorted(Path(p).name for p in report.added) == sorted(["pilot.md", "harvest.txt", ODD_NAME])
    # the files, and the binary .txt skipped with its reason; names are escaped
    files = pane.files.value
    assert "pilot.md" in files and "harvest.txt" in files
    assert "odd&lt;img src=x onerror=alert(1)&gt;.md" in files and "<img" not in files
    skipped = files.split("lmnb-doc-skipped", 1)[1]
    assert "photo.txt" in skipped and "binary content, not text" in skipped
    assert "notes: 3 files" in pane.summary.value
    assert "notes" in pane.library.options and [i.name for i in lmnb.docs.list()] == ["notes"]


def test_search_marks_the_query_and_escapes_the_text(pane, folder):
    added(pane, folder)
    pane.mode.value = "bm25"
    pane.query.value = "script markup"  # Enter in the box (the value arrives when the user submits)
    hits = pane.last_hits
    assert hits and Path(hits[0].file).name == ODD_NAME
    shown = pane.hits.value
    assert "<script" not in shown and "<img" not in shown
    assert "&lt;<mark>script</mark>&gt;window.pwned=1&lt;/<mark>script</mark>&gt;" in shown, shown
    assert "<mark>markup</mark>" in shown
    assert hits[0].where.replace("<", "&lt;").replace(">", "&gt;") in shown
    # hybrid (words and meaning) finds the fact by its words too
    pane.mode.value = "hybrid"
    found = pane.search("beekeepers pilot")
    assert any(FACT in h.text for h in found)
    assert "<mark>beekeepers</mark>" in pane.hits.value and "<mark>pilot</mark>" in pane.hits.value
    assert str(highlight("Pilots <b>", "pilot")) == "<mark>Pilots</mark> &lt;b&gt;"


def test_stop_keeps_the_files_finished_and_adding_again_goes_on(pane, tmp_path, monkeypatch):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(12):
        write_text(many / f"n{i:02}.txt", f"Field note {i}: the hive on row {i} was calm.\n")
    pane.folder.value = str(many)
    # Stop is pressed once the first file is done: a state the bar shows (every step of it drawn)
    monkeypatch.setattr("lmnb.widgets.documents.UI_INTERVAL", 0.0)

    def press_stop(change: dict) -> None:
        if "1/12 files" in change["new"]:
            pane.progress_text.unobserve(press_stop, "value")
            assert pane.stop()

    pane.progress_text.observe(press_stop, "value")
    pane.add_button.click()
    assert pane.wait(120)
    assert "Stopped" in pane.status.value, pane.status.value
    kept = lmnb.docs.library("notes").info().files
    assert kept == 1  # Stop ends the run before the next file
    assert f"keeps the {kept} file" in pane.status.value
    added(pane, many)
    report = pane.last_report
    assert report.unchanged == kept and len(report.added) == 12 - kept
    assert lmnb.docs.library("notes").info().files == 12


def test_bad_input_shows_in_the_status_line(pane, tmp_path):
    pane.folder.value = str(tmp_path / "missing")
    pane.add_button.click()
    assert "there is no folder or file" in pane.status.value and not pane.indexing
    pane.library.value = "no way/../x"
    assert "library name" in pane.summary.value
    pane.add_button.click()
    assert "library name" in pane.status.value


def test_chat_with_docs_gets_sources_and_the_pane_shows_them(pane, folder):
    added(pane, folder)
    chat = Chat(temperature=0, max_tokens=24, docs="notes")
    try:
        lmnb.reset()
        chat.ask("How many beekeepers did the Oslo pilot study enroll?")
        result = chat.wait(120)
        assert result is not None and result.sources
        reply = chat.messages[-1]
        assert reply["role"] == "assistant" and reply["content"] == result.text
        # the whole (small) library fits the budget: every chunk is a numbered source
        sources = reply["sources"]
        assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
        fact = next(s for s in sources if FACT in s["text"])
        assert fact["where"].startswith("pilot.md line") and fact["file"].endswith("pilot.md")
        # the conversation keeps them (a second view, a %%lm chat cell's pane, shows them)
        assert lmnb.conversation().messages[-1]["sources"] == sources
        # the pane reads the last answer's sources from the history (a cell's answer too)
        pane.refresh()
        assert pane.last_sources == result.sources
        assert "pilot.md line" in pane.sources.value
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in pane.sources.value
        assert "<script" not in pane.sources.value
    finally:
        chat.close()
        lmnb.reset()


def test_studio_links_documents_and_chat(loaded, libs, folder):
    s = Studio(temperature=0, max_tokens=16)
    try:
        assert s.tabs.titles[1] == "Documents" and s.panes[1] is s.documents
        assert s.chat.libraries == []
        s.documents.library.value = "notes"
        added(s.documents, folder)
        assert s.chat.libraries == ["notes"]  # the chat's picker lists the new library
        s.chat.docs = "notes"
        lmnb.reset()
        s.chat.ask("What fell after the wet summer?")
        result = s.chat.wait(120)
        # the chat's reply reaches the pane at once
        assert wait_for(lambda: s.documents.last_sources == result.sources)
        s.documents.show_sources([])
        s.select("Documents")  # showing the tab reads the history again
        assert s.documents.last_sources == result.sources
    finally:
        s.close()
        lmnb.reset()
