"""The retrieval evaluation's corpus (notebooks/data/docs): every question's answer is where
questions.jsonl says, as lmnb's own readers see the file, and the generated PDFs, DOCX and HTML
are exactly what make_corpus.py writes (so the bench and the notebook measure the committed files)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import lmnb
from lmnb.docs.readers import read

DOCS = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "docs"
CORPUS = DOCS / "corpus"
QUESTIONS = [json.loads(line) for line in (DOCS / "questions.jsonl").read_text(encoding="utf-8").splitlines()]


def squash(text: str) -> str:
    return " ".join(text.split())


def test_the_question_set_is_a_mix_over_every_kind_of_file():
    assert len(QUESTIONS) >= 40
    styles = {q["style"] for q in QUESTIONS}
    assert styles == {"keyword", "paraphrase", "mixed"}
    suffixes = {Path(q["file"]).suffix for q in QUESTIONS}
    assert {".pdf", ".docx", ".html", ".csv", ".md", ".txt"} <= suffixes
    for q in QUESTIONS:
        assert (CORPUS / q["file"]).is_file(), q["file"]
        where = {"page", "line", "paragraph"} & q.keys()
        assert len(where) == 1, q


@pytest.mark.parametrize("q", QUESTIONS, ids=[f"{q['file']}:{q['answer'][:30]}" for q in QUESTIONS])
def test_each_answer_is_at_its_stated_location(q):
    doc = read(str(CORPUS / q["file"]))
    if "page" in q:
        assert doc.unit == "line"
        # a phrase may wrap onto the next line of the page: the page's text, lines joined
        there = " ".join(p.text for p in doc.passages if p.page == q["page"])
    else:
        assert doc.unit == ("paragraph" if "paragraph" in q else "line")
        at = q.get("line", q.get("paragraph"))
        there = " ".join(p.text for p in doc.passages if p.start <= at <= p.end)
    assert squash(q["answer"]) in squash(there), (q, there[:300])


def test_the_generated_files_are_byte_for_byte_what_make_corpus_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_corpus", DOCS / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    make_corpus.generate(tmp_path)
    for rel in make_corpus.GENERATED:
        assert (tmp_path / rel).read_bytes() == (CORPUS / rel).read_bytes(), f"{rel}: run make_corpus.py"


def test_the_corpus_stays_small_and_holds_dozens_of_pages():
    files = [p for p in CORPUS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1_500_000
    # about 40 pages of text (at ~2,400 characters a page), the "a small corpus"
    chars = sum(len(" ".join(x.text for x in read(str(p)).passages)) for p in files)
    assert chars > 95_000


def _bench():
    spec = importlib.util.spec_from_file_location("retrieval_bench", DOCS.parents[2] / "bench" / "retrieval_bench.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, bench)  # its dataclass looks its module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_the_bench_counts_a_hit_only_at_the_answers_location(loaded, tmp_path):
    """bench/retrieval_bench.py's rule on real hits, from a library of two corpus files (a Word
    document located by paragraphs, field notes by lines): the keyword questions are found, and
    the same hits do not count for an answer placed elsewhere."""
    bench = _bench()
    files = ("handbook/interview_protocol.docx", "field_notes/2024-04-09_bus_depot.txt")
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((CORPUS / rel).read_bytes())
    lmnb.docs.add("corpus-rule", str(tmp_path), progress=False)
    try:
        asked = [q for q in QUESTIONS if q["file"] in files and q["style"] == "keyword"]
        assert len(asked) >= 4
        for q in asked:
            hits = lmnb.docs.search("corpus-rule", q["question"], k=10, mode="bm25")
            rank = bench.first_rank(hits, q, tmp_path)
            assert rank is not None, (q, [h.where for h in hits])
            found = hits[rank - 1]
            assert squash(q["answer"]) in squash(found.text)
            unit = "paragraph" if "paragraph" in q else "line"
            elsewhere = {**q, unit: found.end + 1000}
            assert not bench.holds_answer(found, elsewhere, tmp_path)
            assert not bench.holds_answer(found, {**q, "file": files[q["file"] == files[0]]}, tmp_path)
    finally:
        lmnb.docs.remove("corpus-rule")
