"""Reading documents for the library (lmnb.docs.readers, walk, chunking) on real files the tests
write: each passage and chunk must point at the page and lines (or paragraph) a user would open
to find what it says, and hostile files must come back as a reason, never as a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lmnb.docs.chunking import chunk
from lmnb.docs.readers import Document, Passage, Unreadable, read
from lmnb.docs.walk import walk
from tests.docs_files import (
    binary_named_txt,
    encrypt_pdf,
    sparse_file,
    symlink_loop,
    write_docx,
    write_pdf,
    write_text,
)

MB = 2**20
ROOT = Path(__file__).resolve().parent.parent


def words(text: str) -> int:
    return len(text.split())


def where(doc: Document, needle: str) -> list[tuple]:
    """(page, start, end) of each passage holding ``needle``."""
    return [(p.page, p.start, p.end) for p in doc.passages if needle in p.text]


def reason(path) -> str:
    with pytest.raises(Unreadable) as e:
        read(str(path))
    assert e.value.reason == str(e.value)
    return e.value.reason


@pytest.fixture(scope="module")
def report_pdf(tmp_path_factory) -> Path:
    pages = [[f"Page {n} line {i}: routine field notes." for i in range(1, 7)] for n in (1, 2, 3)]
    pages[1][2] = "The well at Kibera was rebuilt in 1987."
    pages[2][0] = "Funding came from the Otieno family trust."
    return write_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf", pages)


# ---- where each kind's passages come from ------------------------------------------------------
def test_pdf_passages_carry_their_page_and_line(report_pdf):
    doc = read(str(report_pdf))
    assert (doc.kind, doc.unit) == ("pdf", "line")
    assert where(doc, "rebuilt in 1987") == [(2, 3, 3)]
    assert where(doc, "Otieno family trust") == [(3, 1, 1)]
    assert [p.page for p in doc.passages] == [1] * 6 + [2] * 6 + [3] * 6


def test_text_and_markdown_lines_are_numbered_as_an_editor_does(tmp_path):
    txt = write_text(tmp_path / "notes.txt", "first line   \r\n\r\n  indented third\rfourth\n\n\nseventh\n")
    doc = read(str(txt))
    assert (doc.kind, doc.unit) == ("text", "line")
    assert [(p.text, p.start, p.end, p.page) for p in doc.passages] == [
        ("first line", 1, 1, None), ("  indented third", 3, 3, None), ("fourth", 4, 4, None), ("seventh", 7, 7, None)]  # fmt: skip
    md = write_text(tmp_path / "guide.markdown", "# Guide\n\nSome *text*.\n\n- a point\n")
    assert [(p.text, p.start) for p in read(str(md)).passages] == [("# Guide", 1), ("Some *text*.", 3), ("- a point", 5)]
    assert read(str(write_text(tmp_path / "empty.md", ""))).passages == []


def test_docx_paragraphs_are_numbered_in_reading_order(tmp_path):
    path = write_docx(tmp_path / "minutes.docx", ["Minutes of the meeting", "", "The budget was approved on Tuesday.", "   "],
                      table=[["Name", "Role"], ["Wanjiru", "Treasurer"]], after=["Next meeting in May."])  # fmt: skip
    doc = read(str(path))
    assert (doc.kind, doc.unit) == ("docx", "paragraph")
    # empty paragraphs are invisible, so not counted; a table row holds one paragraph per cell
    assert [(p.text, p.start, p.end) for p in doc.passages] == [
        ("Minutes of the meeting", 1, 1), ("The budget was approved on Tuesday.", 2, 2),
        ("Name | Role", 3, 4), ("Wanjiru | Treasurer", 5, 6), ("Next meeting in May.", 7, 7)]  # fmt: skip


def test_csv_rows_are_rendered_with_their_headers_over_their_file_lines(tmp_path):
    path = write_text(tmp_path / "people.csv",
                      'name,city,note\r\nAda,London,"met twice,\nonce in June"\r\n\r\nBob,Paris,\r\nCyd,Rome,ok,extra\r\n')  # fmt: skip
    doc = read(str(path))
    assert (doc.kind, doc.unit) == ("csv", "line")
    assert [(p.text, p.start, p.end) for p in doc.passages] == [
        ("name: Ada; city: London; note: met twice, once in June", 2, 3),
        ("name: Bob; city: Paris", 5, 5),
        ("name: Cyd; city: Rome; note: ok; column 4: extra", 6, 6)]  # fmt: skip
    semi = write_text(tmp_path / "semi.csv", "Ort;Zahl\nBern;3\nBasel;5\n")  # the European export
    assert [p.text for p in read(str(semi)).passages] == ["Ort: Bern; Zahl: 3", "Ort: Basel; Zahl: 5"]


HTML = """<!doctype html>
<html><head><title>Field report</title>
<style>
p { color: red }
</style>
<script>
var hidden = "SCRIPT TEXT";
</script></head>
<body>
<h1>Water points</h1>
<p>The pump at Mathare
was repaired &amp; tested.</p>
<!-- a comment
that runs over lines -->
<noscript>NOSCRIPT TEXT</noscript><template><p>TEMPLATE TEXT</p></template>
<ul><li>Borehole <b>one</b> dry</li>
<li>Borehole two fine</li></ul>
<pre>raw line one
raw line two</pre>
<p>Before break<br>after break</p>
</body></html>
"""


def test_html_shows_visible_text_with_its_source_lines(tmp_path):
    doc = read(str(write_text(tmp_path / "page.html", HTML)))
    assert (doc.kind, doc.unit) == ("html", "line")
    assert [(p.text, p.start, p.end) for p in doc.passages] == [
        ("Field report", 2, 2), ("Water points", 10, 10), ("The pump at Mathare was repaired & tested.", 11, 12),
        ("Borehole one dry", 16, 16), ("Borehole two fine", 17, 17), ("raw line one", 18, 18), ("raw line two", 19, 19),
        ("Before break", 20, 20), ("after break", 20, 20)]  # fmt: skip
    shown = " ".join(p.text for p in doc.passages)
    assert not any(s in shown for s in ("SCRIPT", "color", "NOSCRIPT", "TEMPLATE", "comment"))


def test_html_nested_thousands_deep_is_read(tmp_path):
    doc = read(str(write_text(tmp_path / "deep.htm", "<div>level\n" * 3000)))
    assert len(doc.passages) == 3000 and doc.passages[-1].start == 3000


def test_text_in_other_encodings_is_decoded(tmp_path):
    (tmp_path / "latin.txt").write_bytes("café au lait\nnaïve\n".encode("cp1252"))
    assert [p.text for p in read(str(tmp_path / "latin.txt")).passages] == ["café au lait", "naïve"]
    (tmp_path / "wide.md").write_bytes("# Über\nZürich\n".encode("utf-16"))  # with its BOM
    assert [p.text for p in read(str(tmp_path / "wide.md")).passages] == ["# Über", "Zürich"]
    page = '<html><head><meta charset="windows-1251"></head><body><p>Привет, мир</p></body></html>'
    (tmp_path / "ru.html").write_bytes(page.encode("cp1251"))
    assert [p.text for p in read(str(tmp_path / "ru.html")).passages] == ["Привет, мир"]


# ---- hostile files: a reason, never a crash ----------------------------------------------------
def test_encrypted_pdf_is_unreadable_unless_the_empty_password_opens_it(tmp_path, report_pdf):
    for algorithm in ("AES-256", "RC4-128"):
        locked = encrypt_pdf(report_pdf, tmp_path / f"locked-{algorithm}.pdf", "s3cret", algorithm)
        assert reason(locked) == "encrypted PDF (password-protected)"
    # encrypted against editing only: it opens without a password, as in any PDF viewer
    open_one = encrypt_pdf(report_pdf, tmp_path / "no-edit.pdf", "")
    assert where(read(str(open_one)), "rebuilt in 1987") == [(2, 3, 3)]


def test_binary_and_corrupt_files_are_unreadable(tmp_path, report_pdf):
    assert reason(binary_named_txt(tmp_path / "photo.txt")) == "binary content, not text"
    (tmp_path / "data.csv").write_bytes(os.urandom(4096).replace(b"\x00", b"\x01"))  # no NUL to give it away
    assert reason(tmp_path / "data.csv") == "binary content, not text"
    (tmp_path / "cut.pdf").write_bytes(report_pdf.read_bytes()[:600])
    assert reason(tmp_path / "cut.pdf").startswith("not a valid PDF: ")
    (tmp_path / "fake.pdf").write_text("%PDF-1.7\nthis is not a PDF at all\n")
    assert reason(tmp_path / "fake.pdf").startswith("not a valid PDF: ")
    (tmp_path / "fake.docx").write_text("a plain text file named .docx")
    assert reason(tmp_path / "fake.docx") == "not a valid DOCX: File is not a zip file"
    import zipfile

    with zipfile.ZipFile(tmp_path / "hollow.docx", "w") as z:  # a zip, but no Word document in it
        z.writestr("hello.txt", "hi")
    assert reason(tmp_path / "hollow.docx").startswith("not a valid DOCX: ")
    assert reason(tmp_path / "slides.pptx").startswith("unsupported file type (.pptx)")
    os.mkfifo(tmp_path / "pipe.txt")  # opening it to read would wait for a writer forever
    assert reason(tmp_path / "pipe.txt") == "not a regular file (a device, pipe or socket)"
    (tmp_path / "chapter.md").mkdir()
    assert reason(tmp_path / "chapter.md") == "a folder, not a file"


def test_pypdf_complaints_about_a_damaged_pdf_do_not_reach_the_output(tmp_path, report_pdf, caplog, capfd):
    data = report_pdf.read_bytes()
    xref = data.rindex(b"startxref")
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(data[:xref] + b"startxref\n123\n%%EOF\n")  # pypdf warns, then finds the objects itself
    import logging

    with caplog.at_level(logging.DEBUG):
        doc = read(str(damaged))
    assert where(doc, "Otieno family trust") == [(3, 1, 1)]
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert capfd.readouterr().err == ""
    assert logging.getLogger("pypdf").propagate  # left as it was, for the user's own pypdf use


def test_a_file_deleted_between_walk_and_read_is_unreadable(tmp_path, report_pdf):
    folder = tmp_path / "lib"
    folder.mkdir()
    write_text(folder / "a.md", "# kept\n")
    (folder / "b.pdf").write_bytes(report_pdf.read_bytes())
    found = [c for c in walk([str(folder)], max_bytes=MB) if c.skip is None]
    assert [os.path.basename(c.path) for c in found] == ["a.md", "b.pdf"]
    for c in found:
        os.remove(c.path)
        assert reason(c.path) == "the file disappeared while being read"


PERMISSIONS = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
from lmnb.docs.readers import Unreadable, read
from lmnb.docs.walk import walk
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # from here on, "nobody"
folder = sys.argv[1]
seen = {}
for name in ("open.txt", "closed.txt"):
    try:
        seen[name] = [p.text for p in read(os.path.join(folder, name)).passages]
    except Unreadable as e:
        seen[name] = "Unreadable: " + e.reason
seen["walk"] = [[os.path.relpath(c.path, folder), c.skip] for c in walk([folder], max_bytes=2**20)]
print(json.dumps(seen))
"""


def test_permission_denied_is_a_reason_for_a_reader_without_rights():
    folder = tempfile.mkdtemp(prefix="lmnb-perm-")  # not under pytest's tmp dir: "nobody" must get into it
    try:
        os.chmod(folder, 0o755)
        write_text(Path(folder, "open.txt"), "anyone may read this\n")
        write_text(Path(folder, "closed.txt"), "the owner's only\n")
        os.chmod(Path(folder, "closed.txt"), 0o600 if os.geteuid() == 0 else 0o000)
        os.mkdir(Path(folder, "private"), 0o700 if os.geteuid() == 0 else 0o000)
        if os.geteuid() == 0:  # root reads anything: ask a process that drops to "nobody"
            run = subprocess.run([sys.executable, "-c", PERMISSIONS, folder, str(ROOT)],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
            assert run.returncode == 0, run.stderr
            seen = json.loads(run.stdout)
        else:
            if os.access(Path(folder, "closed.txt"), os.R_OK):
                pytest.skip("this user reads files chmod 000 (a capability overrides permissions)")
            seen = {}
            for name in ("open.txt", "closed.txt"):
                try:
                    seen[name] = [p.text for p in read(os.path.join(folder, name)).passages]
                except Unreadable as e:
                    seen[name] = "Unreadable: " + e.reason
            seen["walk"] = [[os.path.relpath(c.path, folder), c.skip] for c in walk([folder], max_bytes=MB)]
        assert seen["open.txt"] == ["anyone may read this"]
        assert seen["closed.txt"] == "Unreadable: permission denied"
        assert seen["walk"] == [["closed.txt", "permission denied"], ["open.txt", None], ["private", "permission denied"]]
    finally:
        for dirpath, dirnames, _ in os.walk(folder):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o700)
        import shutil

        shutil.rmtree(folder)


# ---- walking folders ---------------------------------------------------------------------------
def test_walk_survives_a_symlink_loop_and_skips_a_huge_file_unread(tmp_path, monkeypatch):
    lib = symlink_loop(tmp_path / "lib")
    sparse_file(lib / "dump.txt", 200 * MB)
    write_text(lib / ".draft.md", "hidden\n")
    (lib / ".git").mkdir()
    write_text(lib / ".git" / "HEAD.txt", "ref\n")
    (lib / "figure.png").write_bytes(b"\x89PNG")
    (lib / "~$minutes.docx").write_bytes(b"lock")
    os.symlink(lib / "notes.txt", lib / "sub" / "same-notes.txt")  # the same file again
    os.symlink(lib / "gone.md", lib / "dangling.md")

    def no_reading(*args, **kwargs):
        raise AssertionError("walk opened a file")

    monkeypatch.setattr("builtins.open", no_reading)  # walk only lists folders and stats files
    monkeypatch.setattr(os, "open", no_reading)
    found = [(os.path.relpath(c.path, lib), c.size, c.skip) for c in walk([str(lib)], max_bytes=50 * MB)]
    monkeypatch.undo()
    assert found == [
        ("a", 0, "symbolic link loop"),
        ("b", 0, "symbolic link loop"),
        ("dangling.md", 0, "broken symbolic link"),
        ("dump.txt", 200 * MB, "too large (200 MB; the limit is LM.docs_max_file_mb = 50 MB)"),
        ("notes.txt", 15, None),
        ("sub/back", 0, f"symbolic link loop (leads back to {os.path.realpath(lib)})"),
        ("sub/deep.md", 7, None),
    ]


def test_walk_names_what_the_user_asked_for_but_cannot_be_indexed(tmp_path, monkeypatch):
    write_text(tmp_path / "a.txt", "a\n")
    (tmp_path / "folder").mkdir()
    write_text(tmp_path / "folder" / "b.htm", "<p>b</p>")
    (tmp_path / "table.xlsx").write_bytes(b"PK")
    monkeypatch.chdir(tmp_path)  # relative paths are taken from the working directory
    found = list(walk(["folder", str(tmp_path / "a.txt"), "table.xlsx", "missing.pdf", "folder"], max_bytes=MB))
    assert [(c.path, c.skip) for c in found] == [
        (str(tmp_path / "folder" / "b.htm"), None),
        (str(tmp_path / "a.txt"), None),
        (str(tmp_path / "table.xlsx"), "unsupported file type (.xlsx); supported: .csv, .docx, .htm, .html, .markdown, .md, .pdf, .txt"),
        (str(tmp_path / "missing.pdf"), "not found"),
    ]  # fmt: skip
    assert found[1].size == 2 and found[1].mtime == os.stat(tmp_path / "a.txt").st_mtime


# ---- chunking ----------------------------------------------------------------------------------
def held(doc: Document, c) -> list[str]:
    """The texts of the passages that a chunk's location names."""
    first, last = (c.page_start or 0, c.start), (c.page_end or 0, c.end)
    return [p.text for p in doc.passages if first <= (p.page or 0, p.start) <= last]


def test_chunks_fit_the_model_and_cite_exactly_the_lines_they_hold(engine, tmp_path):
    def tokens(text: str) -> int:
        return len(engine.tokenize(text, special=False))

    body = [f"Interview {i}: the respondent talked about the harvest and the market prices." for i in range(1, 100)]
    body[76] = "Interview 77: the respondent said the cooperative was founded by Achieng Odhiambo."
    doc = read(str(write_text(tmp_path / "transcript.txt", "\n".join(body) + "\n")))
    chunks = chunk(doc, tokens, size=96, overlap=24)
    assert len(chunks) > 5
    for c in chunks:
        assert c.n_tokens == tokens(c.text) <= 96
        assert c.text.split("\n") == held(doc, c)  # the location covers exactly what the chunk holds
    holding = [c for c in chunks if "Achieng Odhiambo" in c.text]
    assert holding and all(c.start <= 77 <= c.end for c in holding)
    for before, after in zip(chunks, chunks[1:]):  # each starts with the previous one's tail, no gap
        assert before.start < after.start <= before.end
        assert sum(tokens(line) + tokens("\n") for line in body[after.start - 1: before.end]) <= 24

    # a PDF: 30 lines a page, the fact on page 3, line 17
    pdf = read(str(write_pdf(tmp_path / "p.pdf", [body[:30], body[30:60], body[60:90]])))
    pdf_chunks = chunk(pdf, tokens, size=80, overlap=20)
    for c in pdf_chunks:
        assert c.n_tokens <= 80 and c.text.split("\n") == held(pdf, c)
    assert any(c.page_start != c.page_end for c in pdf_chunks)  # a chunk may run on to the next page
    holding = [c for c in pdf_chunks if "Achieng Odhiambo" in c.text]
    assert holding and all((c.page_start, c.start) <= (3, 17) <= (c.page_end, c.end) for c in holding)


def test_a_passage_longer_than_a_chunk_is_cut_at_sentences_then_words_then_characters():
    sentences = " ".join(f"Sentence {i} has exactly six words." for i in range(40))

    def tokens(text: str) -> int:  # a word of n characters is n // 10 tokens (at least one)
        return sum(max(1, len(w) // 10) for w in text.split())

    doc = Document("t", "text", "line", [Passage("short", 1, 1), Passage(sentences, 2, 2)])
    chunks = chunk(doc, tokens, size=50, overlap=0)
    assert all(c.n_tokens <= 50 for c in chunks) and len(chunks) > 4
    assert " ".join(c.text for c in chunks).split() == ["short"] + sentences.split()
    assert all(c.text.endswith(".") and c.end == 2 for c in chunks)  # cut between sentences, same line
    blob = "x" * 2000  # 200 tokens without a break: cut by characters
    pieces = chunk(Document("b", "text", "line", [Passage(blob, 3, 3)]), tokens, size=50, overlap=0)
    assert "".join(c.text for c in pieces) == blob and all(c.n_tokens <= 50 and c.start == 3 for c in pieces)
    with pytest.raises(ValueError):
        chunk(doc, words, size=10, overlap=10)
    assert chunk(Document("e", "text", "line", []), words) == []


def test_chunks_without_overlap_tile_the_document():
    doc = Document("t", "text", "line", [Passage(" ".join(["w"] * (i % 5 + 1)), i, i) for i in range(1, 200)])
    chunks = chunk(doc, words, size=20, overlap=0)
    assert [c.start for c in chunks[1:]] == [c.end + 1 for c in chunks[:-1]]
    assert chunks[0].start == 1 and chunks[-1].end == 199
    assert all(c.n_tokens <= 20 for c in chunks)
    assert sum(c.n_tokens for c in chunks) == sum(words(p.text) for p in doc.passages)
