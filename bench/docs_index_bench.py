"""Indexing a few hundred pages into a document library: speed, and an interrupted run resumed.

Writes a corpus of PAGES pages (half as one long PDF, half as Markdown files of ten pages each),
then, with the bundled SmolLM2 as the embedding model:

1. indexes it all and reports pages/s, chunks and embedding tokens/s (the progress bar shows);
2. indexes it again into a fresh library, interrupted by a real SIGINT (what Ctrl-C and the
   kernel's interrupt send) halfway through the first run's time, then resumes: the second run
   must read only the files the first did not finish, and the two runs together must index what
   the uninterrupted run did;
3. adds it a third time unchanged: nothing is read again.

    python bench/docs_index_bench.py [--pages 300]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300)
    args = ap.parse_args()

    import lmnb
    from lmnb.sources.library import bundled_model

    lmnb.configure(docs_dir=tempfile.mkdtemp(prefix="lmnb-bench-docs-"))
    lmnb.load(bundled_model("smollm2"), n_ctx=2048)
    root = tempfile.mkdtemp(prefix="lmnb-bench-corpus-")
    files, lines = write_corpus(root, args.pages)
    print(f"corpus: {args.pages} pages in {files} files ({lines} lines)")

    t = time.perf_counter()
    full = lmnb.docs.add("whole", root)
    s = time.perf_counter() - t
    print(f"\n1. one run:  {full.summary()}")
    print(f"   {args.pages / s:.1f} pages/s, {full.tokens / s:,.0f} tokens/s embedded and indexed")

    ctrl_c = threading.Timer(s / 2, os.kill, (os.getpid(), signal.SIGINT))
    ctrl_c.start()
    try:
        lmnb.docs.add("resumed", root)
    except KeyboardInterrupt:
        pass
    ctrl_c.join()
    kept = len(lmnb.docs.library("resumed").files())
    rest = lmnb.docs.add("resumed", root, progress=False)
    a, b = lmnb.docs.library("whole").info(), lmnb.docs.library("resumed").info()
    print(f"\n2. Ctrl-C after {s / 2:.0f} s kept {kept} of {files} files; the next run: {rest.summary()}")
    print(f"   read again: {len(rest.added)} files (expected {files - kept}); "
          f"same index as one run: {(a.files, a.chunks, a.tokens) == (b.files, b.chunks, b.tokens)}")

    t = time.perf_counter()
    again = lmnb.docs.add("whole", root, progress=False)
    print(f"\n3. unchanged, added again: {again.summary()} ({time.perf_counter() - t:.2f} s)")


if __name__ == "__main__":
    main()
