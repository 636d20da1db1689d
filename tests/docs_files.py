"""Real documents written by the tests: PDFs of several pages (fpdf2), Word files (python-docx),
HTML, CSV, and the hostile kinds (encrypted, corrupt, binary, huge, looping) a folder may hold."""

from __future__ import annotations

import os
from pathlib import Path


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with one page per item of ``pages``, each line of it a line of text on the page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def encrypt_pdf(src: Path, dst: Path, user_password: str, algorithm: str = "AES-256") -> Path:
    """``src`` encrypted with pypdf: it opens only with ``user_password`` ("" opens freely)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(src))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm=algorithm)
    with open(dst, "wb") as f:
        writer.write(f)
    return dst


def write_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None,
               after: list[str] = ()) -> Path:  # fmt: skip
    """A Word file: ``paragraphs`` ("" for an empty one), then ``table`` (rows of cells), then ``after``."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                t.cell(r, c).text = text
    for text in after:
        document.add_paragraph(text)
    document.save(str(path))
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def binary_named_txt(path: Path) -> Path:
    """What a renamed image or archive looks like: a header, NUL bytes, arbitrary bytes."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    return path


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (as ``truncate -s`` makes it)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def symlink_loop(folder: Path) -> Path:
    """``folder/notes.txt``, ``folder/sub/deep.md``, ``folder/sub/back -> folder`` (a link to an
    ancestor) and ``folder/a -> b``, ``folder/b -> a`` (a loop of links)."""
    (folder / "sub").mkdir(parents=True)
    write_text(folder / "notes.txt", "top-level note\n")
    write_text(folder / "sub" / "deep.md", "# Deep\n")
    os.symlink(folder, folder / "sub" / "back")
    os.symlink(folder / "b", folder / "a")
    os.symlink(folder / "a", folder / "b")
    return folder
