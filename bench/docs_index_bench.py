"""Indexing a few hundred pages into a document library, interrupted and resumed, with its speed.

Writes a corpus of PAGES pages (half as one long PDF, half as Markdown files of ten pages each),
then, with the bundled SmolLM2 as the embedding model:

1. indexes it with the progress bar, and sends a real SIGINT (what Ctrl-C and the kernel's
   interrupt send) once the bar is at --at (half the bytes by default: inside the long PDF);
2. adds it again: the run must read only the files the first did not finish and embed only the
   chunks it had not embedded (a file cut short keeps its vectors aside);
3. checks the result against what one uninterrupted run gives: every file's chunks as chunking
   it afresh makes them, and a sample of chunks embedded afresh (cosine with the stored vectors);
4. adds it a third time unchanged: nothing is read again.

It prints pages/s and embedding tokens/s over the two runs.

    python bench/docs_index_bench.py [--pages 300] [--at 0.5] [--sample 32]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import time

WORDS = ("river harvest clinic ferry school ledger survey village council road bridge market winter "
         "teacher nurse farmer fisherman well mill archive letter report station storm field").split()  # fmt: skip


def sentence(rng: random.Random, i: int) -> str:
    return f"Note {i}: the " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "."


def write_corpus(root: str, pages: int) -> tuple[int, int]:
    """Half the pages in one PDF, half in Markdown files of ten pages (~30 lines a page)."""
    from fpdf import FPDF

    rng = random.Random(0)
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    n = 0
    for _ in range(pages // 2):
        pdf.add_page()
        for _ in range(30):
            pdf.multi_cell(0, 5, sentence(rng, n), new_x="LMARGIN", new_y="NEXT")
            n += 1
    pdf.output(os.path.join(root, "long_report.pdf"))
    files = 1
    for f in range((pages - pages // 2 + 9) // 10):
        with open(os.path.join(root, f"notes_{f:03d}.md"), "w") as out:
            for _ in range(300):
                out.write(sentence(rng, n) + "\n")
                n += 1
        files += 1
    return files, n


class CtrlC:
    """The terminal bar, which sends this process a SIGINT once it is at ``at`` of its total."""

    def __init__(self, name: str, at: float) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, desc=name, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)
        self.at, self.sent = at, False

    def __getattr__(self, name: str):
        return getattr(self.bar, name)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        if not self.sent and self.bar.total and self.bar.n >= self.at * self.bar.total:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--at", type=float, default=0.5, help="the share of the bytes at which to press Ctrl-C")
    ap.add_argument("--sample", type=int, default=32, help="chunks embedded afresh to check the vectors")
    args = ap.parse_args()

    import numpy as np

    import lmnb
    from lmnb.api import get_engine
    from lmnb.config import get_config
    from lmnb.docs.chunking import chunk
    from lmnb.docs.index import Embedder
    from lmnb.docs.readers import read
    from lmnb.sources.library import bundled_model

    lmnb.configure(docs_dir=tempfile.mkdtemp(prefix="lmnb-bench-docs-"))
    lmnb.load(bundled_model("smollm2"), n_ctx=2048)
    root = tempfile.mkdtemp(prefix="lmnb-bench-corpus-")
    files, lines = write_corpus(root, args.pages)
    print(f"corpus: {args.pages} pages in {files} files ({lines} lines)")

    t = time.perf_counter()
    bar = CtrlC("papers", args.at)
    try:
        lmnb.docs.add("papers", root, progress=bar)
        print("the run ended before Ctrl-C was sent")
    except KeyboardInterrupt:
        pass
    t1 = time.perf_counter() - t
    kept = lmnb.docs.library("papers").info()
    print(f"\n1. Ctrl-C at {args.at:.0%} of the bytes, after {t1:.0f} s: kept {kept.files} of {files} files, "
          f"{kept.chunks} chunks")  # fmt: skip

    t = time.perf_counter()
    rest = lmnb.docs.add("papers", root, progress=False)
    t2 = time.perf_counter() - t
    info = lmnb.docs.library("papers").info()
    print(f"\n2. added again: {rest.summary()}")
    print(f"   read: {len(rest.added)} files (expected {files - kept.files}); embedded {rest.embedded} of "
          f"{info.chunks} chunks ({rest.embedded / max(info.chunks, 1):.0%}; the rest was done before Ctrl-C)")
    print(f"   both runs: {args.pages / (t1 + t2):.2f} pages/s, {info.tokens / (t1 + t2):,.0f} tokens/s "
          f"({info.chunks} chunks, {info.tokens:,} tokens in {t1 + t2:.0f} s)")

    cfg = get_config()
    embedder = Embedder(get_engine())
    store = lmnb.docs.library("papers").store
    same = True
    for f in store.files():
        doc = read(f.path)
        fresh = chunk(doc, embedder.counter([p.text for p in doc.passages]), size=cfg.docs_chunk_tokens,
                      overlap=cfg.docs_chunk_overlap)  # fmt: skip
        same &= [c.text for c in fresh] == [c.text for c in store.file_chunks(f.path)]
    ids, mat = store.vectors()
    pick = np.random.default_rng(0).choice(len(ids), size=min(args.sample, len(ids)), replace=False)
    rows = store.chunks([int(ids[i]) for i in pick])
    again = embedder.embed([rows[int(ids[i])].text for i in pick])
    worst = float(min(mat[i] @ v for i, v in zip(pick, again)))
    print(f"\n3. as one run: every file's chunks as chunking it afresh gives: {same}; "
          f"{len(ids)} vectors for {info.chunks} chunks; lowest cosine of {len(pick)} chunks embedded afresh: {worst:.5f}")

    t = time.perf_counter()
    third = lmnb.docs.add("papers", root, progress=False)
    print(f"\n4. unchanged, added again: {third.summary()} ({time.perf_counter() - t:.2f} s)")


if __name__ == "__main__":
    main()
