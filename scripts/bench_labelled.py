"""A text search's answer stage on an exact index, two of its parts against what they replaced, one process:
the relative+labels route scoring every item at once against the general path (a list of the best by
ASIF score, then the items the label term could lift), and the caption match's per-word BM25 scores
kept against asked for each query.

Queries are the collection's captions under templates, encoded once before the timing (the encoder is
not what is compared); then ``Collection.search_vectors`` answers them in batches of the server's
size, as a server's answering thread does, caption match included. The general path is the same
collection with its exact index seen through a wrapper that only searches (an index that cannot score
every item, as the inverted and faiss ones); the keyword scores not kept, a third collection whose
caption match asks BM25 for every word of every query. The three alternate, ``--repeat`` times each;
the report gives each repetition's ms per query, the medians' ratios and whether the answers agree
(ids, ranks and scores; the tie-break's secondary score may differ in its last bits, a different set
of rows going through the same product).

    python scripts/bench_labelled.py indexes/emoji-demo --out results/bench/labelled.md
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from retrieval import Collection
from retrieval.evaluation.benchlib import out_args, report
from retrieval.indexes import Index

TEMPLATES = ("{}", "a picture of {}", "{} icon", "an emoji of {}")


class SearchOnly(Index):
    """An index that answers searches and nothing more: the general path's view of an exact index."""

    def __init__(self, inner: Index):
        super().__init__()
        self.inner, self.dim, self.name = inner, inner.dim, inner.name

    def search(self, queries, k, secondary=None, allowed=None):
        return self.inner.search(queries, k, secondary, allowed=allowed)

    def __len__(self):
        return len(self.inner)

    def add(self, vectors):
        raise NotImplementedError("a benchmark's read-only view")

    def save(self, folder, stem):
        raise NotImplementedError("a benchmark's read-only view")

    def load(self, folder, stem, vectors):
        raise NotImplementedError("a benchmark's read-only view")


def answers(col: Collection, vectors: np.ndarray, texts, batch: int):
    """(seconds, every query's hits as (id, rank, score, matched)) of answering in batches."""
    t, out = time.perf_counter(), []
    for s in range(0, len(texts), batch):
        for hits in col.search_vectors(vectors[s:s + batch], k=10, texts=texts[s:s + batch]):
            out.append([(h.id, h.rank, h.score, h.matched) for h in hits])
    return time.perf_counter() - t, out


def main() -> int:
    a, _ = out_args(__doc__, lambda ap: (ap.add_argument("index", nargs="?", default="indexes/emoji-demo"),
                                         ap.add_argument("--queries", type=int, default=700),
                                         ap.add_argument("--batch", type=int, default=14),
                                         ap.add_argument("--repeat", type=int, default=5)))
    everywhere, general, unkept = Collection.open(a.index), Collection.open(a.index), Collection.open(a.index)
    target = everywhere.modality
    if everywhere.plan("text", target).route != "relative+labels":
        raise SystemExit(f"expected a collection whose text queries take the relative+labels route, got "
                         f"{everywhere.plan('text', target).route!r} for {a.index}")
    general.sides[target].index = SearchOnly(general.sides[target].index)
    match = unkept.caption_match()
    match._word_scores = match._score_word  # every word's scores asked of BM25 again, as before they were kept
    rng = random.Random(0)
    captions = list(everywhere.texts["text"])
    texts = [rng.choice(TEMPLATES).format(c) for c in rng.sample(captions, min(a.queries, len(captions)))]
    vectors = everywhere.encode_queries(texts)
    cols = {"general": general, "unkept": unkept, "everywhere": everywhere}
    for col in cols.values():
        col.fill_dense_rows()
        answers(col, vectors[:a.batch * 2], texts[:a.batch * 2], a.batch)  # warm: caches, the caption match
    times = {name: [] for name in cols}
    for _ in range(a.repeat):
        for name, col in cols.items():
            seconds, hits = answers(col, vectors, texts, a.batch)
            times[name].append(seconds / len(texts) * 1e3)
            times.setdefault(name + " hits", hits)
    med = {n: float(np.median(times[n])) for n in cols}
    same = times["general hits"] == times["everywhere hits"] == times["unkept hits"]
    lines = [f"A text search's answer stage on `{a.index}` ({len(everywhere.item_ids):,} items, exact "
             f"index): {len(texts)} text queries in batches of {a.batch}, encoded before the timing; the three "
             f"variants alternate, {a.repeat} times each, in one process.", "",
             f"Command: `python scripts/bench_labelled.py {' '.join(sys.argv[1:])}`", "",
             "| path | ms a query, each repetition | median ms a query |", "|---|---|---:|"]
    for name, what in (("general", "labels: general path (best by ASIF, then what the label term could lift); "
                                   "keyword scores kept"),
                       ("unkept", "labels: every item scored at once; keyword scores asked of BM25 each query"),
                       ("everywhere", "labels: every item scored at once; keyword scores kept (the engine now)")):
        lines.append(f"| {what} | {', '.join(f'{t:.3f}' for t in times[name])} | {med[name]:.3f} |")
    lines += ["", f"Every item scored at once / general: **{med['everywhere'] / med['general']:.2f} x** the time; "
              f"keyword scores kept / asked each query: **{med['everywhere'] / med['unkept']:.2f} x**. "
              f"Answers (ids, ranks, scores, caption matches) identical in all three: **{same}**."]
    report(lines, a.out, {"index": a.index, "queries": len(texts), "batch": a.batch, "ms_per_query":
                          {n: times[n] for n in cols}, "median": med, "identical": same})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
