"""The document library on the real bundled model: indexing a folder of every supported type,
searching it, re-indexing what changed, dropping what is gone, surviving hostile files and an
interrupt, and answering with citations that point at the chunk holding the fact."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

import lmnb
from lmnb.api import get_engine
from lmnb.config import get_config

from .docs_files import binary_named_txt, encrypt_pdf, write_docx, write_pdf, write_text

FACTS = {
    "pdf": "The Halvorsen pilot enrolled 212 beekeepers across four valleys.",
    "docx": "Committee minutes record that the orchard bridge reopened on 14 March.",
    "md": "Interviewee Ngozi said the night ferry was the only way to reach the clinic.",
    "txt": "The glacier station logged a record low of minus 41 degrees in 1987.",
    "html": "Our lighthouse keeper, Ms. Albescu, trained eleven apprentices.",
    "csv": "Quarry ledger",
}


def _corpus(root: Path) -> Path:
    (root / "notes").mkdir(parents=True, exist_ok=True)
    filler = [f"Background remark number {i} about weather, roads and harvests." for i in range(12)]
    write_pdf(root / "pilot.pdf", [filler[:6], filler[6:] + [FACTS["pdf"]], ["Appendix: tables follow."]])
    write_docx(root / "minutes.docx", ["Minutes of the parish committee.", "", "Attendance was good.",
                                       FACTS["docx"], "The meeting closed at nine."])  # fmt: skip
    write_text(root / "notes" / "interview.md",
               "# Interview 3\n\nThe morning was cold.\n\n" + FACTS["md"] + "\n\nShe laughed about it.\n")  # fmt: skip
    write_text(root / "notes" / "station.txt", "\n".join(filler[:4] + [FACTS["txt"]] + filler[4:8]) + "\n")
    write_text(root / "page.html", "<html><head><script>alert(1)</script><title>Coast</title></head><body>\n"
               "<h1>Coast notes</h1>\n<p>Gulls everywhere.</p>\n<p>" + FACTS["html"] + "</p>\n</body></html>\n")  # fmt: skip
    write_text(root / "ledger.csv", "item,amount,note\nslate,12,Quarry ledger entry for slate\ngranite,7,sold\n")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _corpus(tmp_path / "corpus")


@pytest.fixture
def library(loaded, corpus):
    """A library of its own, for a test that changes it."""
    report = lmnb.docs.add("changing", str(corpus), progress=False)
    yield "changing", report
    lmnb.docs.remove("changing")


@pytest.fixture(scope="module")
def shared(engine, smollm2_path, tmp_path_factory):
    """One library for the tests that only read it (indexed once, with the bundled model)."""
    if not engine.loaded or engine.info.path != os.path.abspath(smollm2_path):
        lmnb.load(smollm2_path, n_ctx=2048)
    report = lmnb.docs.add("shared", str(_corpus(tmp_path_factory.mktemp("shared"))), progress=False)
    yield "shared", report
    lmnb.docs.remove("shared")


def _only(hits, fact: str):
    found = [h for h in hits if fact in " ".join(h.text.split())]
    assert found, f"no hit holds {fact!r}: {[h.where for h in hits]}"
    return found[0]


def test_a_folder_of_every_type_is_indexed_and_found_where_it_is(loaded, shared):
    name, report = shared
    assert len(report.added) == 6 and not report.skipped and report.chunks >= 6, report
    hit = _only(lmnb.docs.search(name, "How many beekeepers did the Halvorsen pilot enroll?", k=3), FACTS["pdf"])
    assert hit.kind == "pdf" and hit.page_start <= 2 <= hit.page_end
    hit = _only(lmnb.docs.search(name, "When did the orchard bridge reopen?", k=3), FACTS["docx"])
    assert hit.unit == "paragraph" and hit.start <= 3 <= hit.end  # the 4th paragraph, the empty one not counted
    hit = _only(lmnb.docs.search(name, "night ferry clinic", k=3, mode="bm25"), FACTS["md"])
    assert hit.start <= 5 <= hit.end and "interview.md" in hit.where
    hit = _only(lmnb.docs.search(name, "glacier record low", k=3), FACTS["txt"])
    assert hit.start <= 5 <= hit.end
    hit = _only(lmnb.docs.search(name, "lighthouse apprentices", k=3), FACTS["html"])
    assert "alert" not in hit.text and hit.start <= 4 <= hit.end  # the script is not text; source line 4
    hit = _only(lmnb.docs.search(name, "slate quarry", k=3), FACTS["csv"])
    assert "amount: 12" in hit.text and hit.start <= 2 <= hit.end
    info = {i.name: i for i in lmnb.docs.list()}[name]
    assert info.files == 6 and info.model == lmnb.info().name


def test_each_search_mode_ranks_and_bad_queries_say_why(loaded, shared):
    name, _ = shared
    for mode in ("bm25", "vector", "hybrid", "auto"):
        hits = lmnb.docs.search(name, "glacier station record low temperature", k=4, mode=mode)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert "glacier" in lmnb.docs.search(name, 'glacier AND "NEAR(* station', k=1, mode="bm25")[0].text
    with pytest.raises(ValueError, match="mode"):
        lmnb.docs.search(name, "x", mode="fuzzy")
    with pytest.raises(ValueError, match="empty"):
        lmnb.docs.search(name, "  ")
    with pytest.raises(KeyError, match="no document library named 'nope'"):
        lmnb.docs.search("nope", "x")
    with pytest.raises(ValueError, match="library name"):
        lmnb.docs.add("../escape", ".")


def test_adding_again_reads_only_what_changed_and_drops_what_is_gone(library, corpus):
    name, _ = library
    again = lmnb.docs.add(name, str(corpus), progress=False)
    assert (again.added, again.updated, again.removed, again.unchanged) == ([], [], [], 6)
    station = corpus / "notes" / "station.txt"
    station.write_text(station.read_text().replace("minus 41", "minus 44"))
    (corpus / "ledger.csv").unlink()
    again = lmnb.docs.add(name, progress=False)  # no paths: the library's folders, again
    assert again.updated == [str(station)] and again.added == [] and again.unchanged == 4
    assert again.removed == [str(corpus / "ledger.csv")]
    text = " ".join(h.text for h in lmnb.docs.search(name, "glacier record low", k=3, mode="bm25"))
    assert "minus 44" in text and "minus 41" not in text
    assert not any("ledger.csv" in h.file for h in lmnb.docs.search(name, "slate quarry ledger", k=10, mode="bm25"))
    assert str(corpus / "ledger.csv") not in [f.path for f in lmnb.docs.library(name).files()]


def test_hostile_files_are_skipped_with_a_reason_and_the_rest_is_indexed(loaded, tmp_path):
    root = _corpus(tmp_path / "c")
    binary_named_txt(root / "photo.txt")
    encrypt_pdf(root / "pilot.pdf", root / "secret.pdf", "hunter2")
    (root / "big.md").write_bytes(b"x")
    os.truncate(root / "big.md", 3 * 2**20)
    get_config().docs_max_file_mb = 1
    try:
        report = lmnb.docs.add("hostile", str(root), progress=False)
    finally:
        get_config().docs_max_file_mb = 50.0
    try:
        reasons = {os.path.basename(p): why for p, why in report.skipped}
        assert set(reasons) == {"photo.txt", "secret.pdf", "big.md"}
        assert "binary" in reasons["photo.txt"] and "encrypted" in reasons["secret.pdf"]
        assert "too large" in reasons["big.md"]
        assert len(report.added) == 6
        assert {os.path.basename(p) for p, _ in lmnb.docs.library("hostile").skipped()} == set(reasons)
    finally:
        lmnb.docs.remove("hostile")


def test_an_interrupted_run_keeps_the_files_it_finished_and_the_next_goes_on(loaded, tmp_path, monkeypatch):
    from lmnb.docs.store import Store

    root = tmp_path / "many"
    root.mkdir()
    for i in range(7):
        write_text(root / f"note{i}.md", f"Note {i}: the courier reached village {i} by noon.\n")
    stored = Store.put_file

    def put_then_interrupt(self, *args, **kwargs):  # Ctrl-C right after the third file is committed
        stored(self, *args, **kwargs)
        if len(self.files()) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "put_file", put_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        lmnb.docs.add("interrupted", str(root), progress=False)
    monkeypatch.setattr(Store, "put_file", stored)
    try:
        assert len(lmnb.docs.library("interrupted").files()) == 3
        report = lmnb.docs.add("interrupted", progress=False)
        assert report.unchanged == 3 and len(report.added) == 4
    finally:
        lmnb.docs.remove("interrupted")


class _Bar:
    """A tqdm stand-in that records what the indexer shows, and presses Stop on a condition."""

    def __init__(self, stop_when) -> None:
        self.stop_when, self.stop = stop_when, threading.Event()
        self.total = self.n = 0
        self.unit, self.postfix, self.seen = "B", "", []

    def reset(self, total=None):
        self.total, self.n = total or 0, 0

    def set_postfix_str(self, s, refresh=True):
        self.postfix = s

    def set_description_str(self, s=None, refresh=True):
        pass

    def update(self, k=1):
        self.n += k
        self.seen.append((self.n, self.postfix))
        if self.stop_when(self.postfix):
            self.stop.set()

    def close(self):
        pass


def test_a_big_file_moves_the_bar_and_a_stop_in_it_goes_on_where_it_was(loaded, tmp_path, monkeypatch):
    from lmnb.docs.index import Embedder

    monkeypatch.setattr(get_config(), "docs_chunk_tokens", 32)  # one long file, many chunks
    monkeypatch.setattr(get_config(), "docs_chunk_overlap", 0)
    root = tmp_path / "mixed"
    root.mkdir()
    write_text(root / "a.md", "A short note about the bakery.\n")
    write_text(root / "big.md", "".join(f"Line {i}: the ferry left the harbour at dawn with {i} crates.\n"
                                        for i in range(48)))  # fmt: skip
    small, big = (root / "a.md").stat().st_size, (root / "big.md").stat().st_size
    bar = _Bar(lambda text: "big.md: chunk 16/" in text)
    try:
        report = lmnb.docs.add("big", str(root), progress=bar, stop=bar.stop)
        assert report.interrupted and [Path(p).name for p in report.added] == ["a.md"]
        assert [Path(f.path).name for f in lmnb.docs.library("big").files()] == ["a.md"]
        # the bar moved inside big.md, chunk by chunk, before the file was done
        inside = [(n, re.search(r"big\.md: chunk (\d+)/(\d+)", text)) for n, text in bar.seen]
        inside = [(n, int(m[1]), int(m[2])) for n, m in inside if m]
        assert [done for _, done, _ in inside] == [8, 16] and inside[0][2] > 16  # stopped after 16 of them
        assert small < inside[0][0] < inside[1][0] < small + big and bar.total == small + big
        assert all("1/2 files" in text for n, text in bar.seen if small < n < small + big)
        # the next run goes on: big.md only, and its first 16 chunks are not embedded again
        embedded: list[str] = []
        embed = Embedder.embed
        monkeypatch.setattr(Embedder, "embed", lambda self, texts: embedded.extend(texts) or embed(self, texts))
        again = lmnb.docs.add("big", progress=False)
        assert again.unchanged == 1 and [Path(p).name for p in again.added] == ["big.md"]
        n_chunks = inside[0][2]
        assert not again.interrupted and again.chunks == n_chunks and len(embedded) == n_chunks - 16
        # each chunk has its own vector: those kept aside are the ones embedding it now gives
        store = lmnb.docs.library("big").store
        rows = store.file_chunks(next(f.path for f in store.files() if f.path.endswith("big.md")))
        ids, mat = store.vectors()
        stored = dict(zip(ids.tolist(), mat))
        fresh = Embedder(get_engine()).embed([r.text for r in rows])
        assert min(float(stored[r.id] @ v) for r, v in zip(rows, fresh)) > 0.999
    finally:
        lmnb.docs.remove("big")


def test_a_new_embedding_model_embeds_the_library_again(loaded, shared):
    name, _ = shared
    lib = lmnb.docs.library(name)
    store = lib.store
    ids, before = store.vectors()
    store.set_model({"name": "another", "file": "x.gguf", "size": 1})  # as if another model had embedded it
    assert len(store.vectors()[0]) == 0
    assert "glacier" in lmnb.docs.search(name, "glacier record low", k=1, mode="hybrid")[0].text
    ids2, after = store.vectors()
    # the same vectors again (up to float noise: texts are grouped otherwise in the decode calls)
    assert list(ids2) == list(ids) and (after * before).sum(axis=1).min() > 0.999


def test_a_docs_chat_cites_the_chunk_that_holds_the_fact(loaded, shared):
    name, _ = shared
    get_config().docs_context_tokens = 250  # less than the library (434 tokens): retrieval picks the chunks
    try:
        result = lmnb.chat("How many beekeepers did the Halvorsen pilot enroll?", docs=name, max_tokens=16,
                           temperature=0, grammar='root ::= "It enrolled 212 [1]."')  # fmt: skip
    finally:
        get_config().docs_context_tokens = 0
    first = result.sources[0]
    assert FACTS["pdf"] in " ".join(first["text"].split()) and first["cited"]
    assert first["where"] == "pilot.pdf p. 1–3" and not any(s["cited"] for s in result.sources[1:])
    assert sum(s["text"].count(" ") for s in result.sources) < 250  # within the budget, in words at least
    lmnb.history()  # flushes the writer
    row = sqlite3.connect(get_config().resolved_history_path()).execute(
        "SELECT messages, sources FROM generations ORDER BY id DESC LIMIT 1").fetchone()  # fmt: skip
    prompt = json.loads(row[0])[-1]["content"]
    assert f"[1] {first['where']}\n" in prompt and prompt.endswith("Question: How many beekeepers did the "
                                                                   "Halvorsen pilot enroll?")  # fmt: skip
    assert json.loads(row[1])[0]["chunk_id"] == first["chunk_id"]
    from lmnb.notebook.display import _Reply

    bundle = _Reply(result.text, True, sources=result.sources, anchor="r1")._repr_mimebundle_()
    assert 'class="lmnb-cite" href="#lmnb-src-r1-1" title="pilot.pdf p. 1–3' in bundle["text/html"]
    assert "Sources:\n[1] pilot.pdf p. 1–3" in bundle["text/plain"]


def test_a_small_library_goes_whole_into_the_prompt(loaded, tmp_path):
    root = tmp_path / "small"
    root.mkdir()
    write_text(root / "a.md", "Alpha fact: the well is 30 metres deep.\n")
    write_text(root / "b.md", "Beta fact: the mill has six sails.\n")
    lmnb.docs.add("small", str(root), progress=False)
    try:
        result = lmnb.chat("How deep is the well?", docs="small", max_tokens=8, temperature=0)
        assert sorted(os.path.basename(s["file"]) for s in result.sources) == ["a.md", "b.md"]
        assert all(s["score"] is None for s in result.sources)  # whole documents, not search hits
    finally:
        lmnb.docs.remove("small")
    shutil.rmtree(root)


def test_a_docs_cell_shows_its_sources_and_records_them(shared, shell):
    from .conftest import final_reply, run_cell

    name, _ = shared
    get_config().docs_context_tokens = 250
    try:
        result, cap = run_cell(shell, f"chat --docs {name} -n 12 -t 0 --name docs-cell",
                               "How many beekeepers did the Halvorsen pilot enroll?")  # fmt: skip
    finally:
        get_config().docs_context_tokens = 0
    result.raise_error()
    out = final_reply(cap)
    sources = out.metadata["lmnb"]["sources"]
    assert any(FACTS["pdf"] in " ".join(s["text"].split()) for s in sources)
    assert 'class="lmnb-sources"' in out.data["text/html"]
    # the conversation keeps the question, not the sources put in front of it
    user, reply = lmnb.conversation("docs-cell").messages[-2:]
    assert user["content"] == "How many beekeepers did the Halvorsen pilot enroll?"
    assert reply["sources"] == sources  # the chat pane shows the turn's citations too


def test_with_tools_the_library_is_a_search_tool(loaded, shared):
    from lmnb.docs.grounding import search_tool

    name, _ = shared
    tool = search_tool(name, lmnb.get_engine())
    assert tool.name == "search_documents" and tool.parameters["required"] == ["query"]
    out = tool.fn(query="glacier station record low")
    assert "station.txt line" in out and "minus 41" in out
    with pytest.raises(KeyError, match="no document library"):
        search_tool("missing-library", lmnb.get_engine())
