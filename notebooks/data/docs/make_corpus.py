"""Writes the generated files of the document-library evaluation corpus, and the answer locations
of its questions.

    python notebooks/data/docs/make_corpus.py

``corpus/`` is what gets indexed (``lmnb.docs.add(name, "notebooks/data/docs/corpus")``). Most of
it is plain files kept as they are; this script writes the rest, byte for byte what is committed:

- ``corpus/primer/science_primer.pdf`` (fpdf2) from ``sources/science_primer.md``;
- ``corpus/reports/annual_review_2023.pdf`` (fpdf2): the first report of each project in
  ``../reports_train.jsonl`` (the notebooks' synthetic project reports);
- ``corpus/reports/portfolio_2024.html``: the same for ``../reports_test.jsonl``;
- ``corpus/handbook/interview_protocol.docx`` (python-docx) from ``sources/interview_protocol.md``;
- ``corpus/interviews/interviews.csv``: a copy of ``../interviews.csv``.

The sources live outside ``corpus/`` so that no fact is indexed twice (a hit in a copy would not
count). Then each question in ``questions.jsonl`` gets the location of its ``answer`` phrase, found
here independently of lmnb's readers: ``page`` for a PDF (pypdf's text of that page), ``paragraph``
for the DOCX (the paragraphs written here), ``line`` (1-based, of the file) for everything else. An
answer must occur exactly once in its file, so the location is unambiguous.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SOURCES = HERE / "sources"
DATA = HERE.parent
FIXED = datetime(2024, 10, 1, 12, 0, tzinfo=timezone.utc)  # dates inside the files: fixed, for stable bytes


def blocks(markdown: str) -> list[tuple[str, str]]:
    """``(kind, text)`` for each heading ("h1", "h2") and paragraph of a simple Markdown file."""
    out = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        text = " ".join(block.split())
        if text.startswith("## "):
            out.append(("h2", text[3:]))
        elif text.startswith("# "):
            out.append(("h1", text[2:]))
        else:
            out.append(("p", text))
    return out


def first_per_project(jsonl: Path) -> list[str]:
    """The first report of each project, in file order (projects recur in the notebooks' sets)."""
    seen: dict[str, str] = {}
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seen.setdefault(row["record"]["project"], row["report"])
    return list(seen.values())


def write_pdf(path: Path, title: str, parts: list[tuple[str, str]]) -> None:
    from fpdf import FPDF

    class Doc(FPDF):
        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", size=8)
            self.cell(0, 10, f"{title} - page {self.page_no()}", align="C")

    pdf = Doc(format="A4")
    pdf.core_fonts_encoding = "windows-1252"  # the reports' euro sign; latin-1 has none
    pdf.set_creation_date(FIXED)
    pdf.set_title(title)
    pdf.set_author("lmnb evaluation corpus")
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=22)
    pdf.add_page()
    for kind, text in parts:
        if kind == "h1":
            pdf.set_font("Helvetica", style="B", size=18)
            pdf.multi_cell(0, 9, text)
            pdf.ln(4)
        elif kind == "h2":
            pdf.ln(3)
            pdf.set_font("Helvetica", style="B", size=13)
            pdf.multi_cell(0, 7, text)
            pdf.ln(1)
        else:
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 5.6, text)
            pdf.ln(2.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(pdf.output()))


def write_docx(path: Path, parts: list[tuple[str, str]]) -> list[str]:
    """Writes the DOCX; returns its paragraphs in order (none empty, no tables)."""
    import docx

    doc = docx.Document()
    props = doc.core_properties
    props.author = props.last_modified_by = "lmnb evaluation corpus"
    props.title = parts[0][1]
    props.created = props.modified = props.last_printed = FIXED.replace(tzinfo=None)
    props.revision = 1
    paragraphs = []
    for kind, text in parts:
        if kind == "p":
            doc.add_paragraph(text)
        else:
            doc.add_heading(text, level=1 if kind == "h1" else 2)
        paragraphs.append(text)
    raw = io.BytesIO()
    doc.save(raw)
    # python-docx stamps every zip entry with the time of saving: rewrite them with a fixed one
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 10, 1, 12, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return paragraphs


def write_html(path: Path, title: str, intro: str, reports: list[str]) -> None:
    from html import escape

    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", "</head>", "<body>", f"<h1>{escape(title)}</h1>",
             f"<p>{escape(intro)}</p>", "<main>"]  # fmt: skip
    for i, report in enumerate(reports, 1):
        lines += ["<article>", f"<h2>Report {i}</h2>", f"<p>{escape(report)}</p>", "</article>"]
    lines += ["</main>", "</body>", "</html>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


REVIEW_INTRO = (
    "This review collects one status report for each project in the 2023 portfolio, as submitted "
    "by the project leads. The reports are synthetic, generated for the lmnb example notebooks "
    "(notebooks/data/project_reports.py); names, people and figures are invented."
)
PORTFOLIO_INTRO = (
    "Status reports of the projects started or reviewed in 2024, one per project. Synthetic text "
    "from the lmnb example notebooks; all names and figures are invented."
)


GENERATED = (
    "primer/science_primer.pdf",
    "reports/annual_review_2023.pdf",
    "reports/portfolio_2024.html",
    "handbook/interview_protocol.docx",
    "interviews/interviews.csv",
)


def generate(corpus: Path = CORPUS) -> list[str]:
    """Writes every generated file (``GENERATED``) under ``corpus``; returns the DOCX's paragraphs."""
    primer = blocks((SOURCES / "science_primer.md").read_text(encoding="utf-8"))
    write_pdf(corpus / GENERATED[0], "A Short Science Primer", primer)

    train = first_per_project(DATA / "reports_train.jsonl")
    review = [("h1", "Annual project review 2023"), ("p", REVIEW_INTRO)]
    for i, report in enumerate(train, 1):
        review += [("h2", f"Report {i}"), ("p", report)]
    write_pdf(corpus / GENERATED[1], "Annual project review 2023", review)

    test = first_per_project(DATA / "reports_test.jsonl")
    write_html(corpus / GENERATED[2], "Project portfolio 2024", PORTFOLIO_INTRO, test)

    protocol = blocks((SOURCES / "interview_protocol.md").read_text(encoding="utf-8"))
    paragraphs = write_docx(corpus / GENERATED[3], protocol)

    (corpus / GENERATED[4]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "interviews.csv", corpus / GENERATED[4])
    return paragraphs


def squash(text: str) -> str:
    return " ".join(text.split())


def locate(rel: str, answer: str, docx_paragraphs: list[str]) -> dict:
    """``{"page": n}``, ``{"paragraph": n}`` or ``{"line": n}`` where ``answer`` occurs, exactly once."""
    path = CORPUS / rel
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        units = [squash(page.extract_text() or "") for page in PdfReader(path).pages]
        key = "page"
    elif path.suffix == ".docx":
        units, key = docx_paragraphs, "paragraph"
    else:
        units, key = path.read_text(encoding="utf-8").split("\n"), "line"
    found = [(i, u.count(squash(answer) if key == "page" else answer)) for i, u in enumerate(units, 1)]
    found = [(i, n) for i, n in found if n]
    if len(found) != 1 or found[0][1] != 1:
        raise SystemExit(f"{rel}: the answer {answer!r} occurs {sum(n for _, n in found)} times "
                         f"({key}s {[i for i, _ in found]}); it must occur exactly once")  # fmt: skip
    return {key: found[0][0]}


def main() -> None:
    paragraphs = generate()
    questions_file = HERE / "questions.jsonl"
    rows = [json.loads(line) for line in questions_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for row in rows:
        keep = {k: row[k] for k in ("question", "file", "answer", "style")}
        out.append({**keep, **locate(row["file"], row["answer"], paragraphs)})
    questions_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    from pypdf import PdfReader

    pages = {p.relative_to(CORPUS).as_posix(): len(PdfReader(p).pages) for p in sorted(CORPUS.rglob("*.pdf"))}
    size = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"{len(out)} questions located; PDF pages {pages}; corpus {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
