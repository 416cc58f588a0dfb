"""Items found by their own caption: the hybrid part of a text search of a partly captioned corpus.

A captioned item's caption is direct evidence of what it shows, stronger than any cross-modal score:
a query that *is* that caption (up to wording) or names every word of it should find the item first.
But the caption route must not push uncaptioned items out merely because captioned ones have text to
match: only a caption that matches the query about as well as the query matches itself counts.

An item is *promoted* when its caption

* lies at cosine >= ``threshold`` from the query in the text encoder's space; the threshold is the
  99th percentile of how close a caption comes to the nearest *different* caption of the same corpus
  (clipped to [MIN_THRESHOLD, MAX_THRESHOLD]): a description of another item rarely reaches it, a
  rewording of the caption itself does; or
* contains every word of the query (BM25 index over the captions, :mod:`bm25s`): a keyword search.

Promoted items come first (cosine matches by cosine, then keyword matches by BM25 score), the rest in
the order of the cross-modal route. Measured on both populations in ``retrieval eval --suite captions``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from retrieval.core.normalise import l2_normalise

MIN_THRESHOLD, MAX_THRESHOLD = 0.90, 0.99
PERCENTILE = 99.0
SAMPLE = 1000        # captions whose nearest other caption sets the threshold (seeded sample)
WORD_CACHE_BYTES = 32 << 20  # the words' score vectors kept (_word_scores)
TOKENS = r"(?u)\b\w+\b"  # single letters and digits are words here ("1 yen" is not "100 yen")


def _quiet_bm25s() -> None:
    quiet = logging.getLogger("bm25s")
    if quiet.level != logging.WARNING:  # it logs every index built at DEBUG (setting it costs a cache clear)
        quiet.setLevel(logging.WARNING)


def _tokenize(texts: Sequence[str]) -> List[List[str]]:
    import bm25s

    _quiet_bm25s()
    return bm25s.tokenize(list(texts), stopwords="en", token_pattern=TOKENS, return_ids=False, show_progress=False)


def threshold(vectors: np.ndarray, texts: Sequence[str], seed: int = 0, block: int = 128) -> float:
    """How close a caption must be to count as the query's own: see the module's docstring."""
    _, key = np.unique([" ".join(t.split()).casefold() for t in texts], return_inverse=True)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(key), min(SAMPLE, len(key)), replace=False) if len(key) else np.zeros(0, np.int64)
    nearest = []
    for start in range(0, len(sample), block):  # a block of sampled captions against all, bounded in memory
        rows = sample[start:start + block]
        sims = vectors[rows] @ vectors.T
        sims[key[rows][:, None] == key[None, :]] = -np.inf  # the caption itself and its exact repeats
        best = sims.max(axis=1)
        nearest.extend(float(b) for b in best[np.isfinite(best)])
    if not nearest:  # one distinct caption: nothing says how close different captions come
        return MIN_THRESHOLD
    return float(np.clip(np.percentile(nearest, PERCENTILE), MIN_THRESHOLD, MAX_THRESHOLD))


@dataclass
class Match:
    """One query's promoted items: their ``rows`` in promotion order and their caption cosine."""

    rows: np.ndarray
    cosine: np.ndarray
    how: List[str]  # "caption" (cosine >= threshold) or "keywords" (every query word in the caption)


class CaptionMatch:
    """Fitted on the captioned items: their caption vectors (text encoder), texts and item rows."""

    def __init__(self, vectors: np.ndarray, texts: Sequence[str], rows: np.ndarray, limit: float):
        import bm25s

        self.vectors, self.texts = l2_normalise(np.asarray(vectors, np.float32)), list(texts)
        self.rows, self.threshold = np.asarray(rows, np.int64), float(limit)
        self.bm25 = bm25s.BM25()
        _quiet_bm25s()
        tokens = bm25s.tokenize(self.texts, stopwords="en", token_pattern=TOKENS, show_progress=False)
        self.vocab = sorted(tokens.vocab)
        self._scores = None
        if self.vocab:
            self.bm25.index(tokens, show_progress=False)

    @classmethod
    def fit(cls, vectors: np.ndarray, texts: Sequence[str], rows) -> "CaptionMatch":
        if len(texts) != len(vectors) or len(texts) != len(rows):
            raise ValueError(f"expected as many caption vectors, texts and rows, got {len(vectors)}, {len(texts)}, "
                             f"{len(rows)}")
        unit = l2_normalise(np.asarray(vectors, np.float32))
        return cls(unit, texts, rows, threshold(unit, texts))

    def to_spec(self) -> dict:
        return {"captions": len(self.texts), "threshold": round(self.threshold, 4), "keywords": "bm25s"}

    def _keywords(self, tokens: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Captions holding every word of a query's ``tokens`` (stop words aside), and every caption's
        BM25 score."""
        words = sorted(set(tokens)) if self.vocab else []
        if not words or any(w not in self.bm25.vocab_dict for w in words):
            return np.zeros(len(self.texts), bool), np.zeros(len(self.texts))
        per_word = np.vstack([self._word_scores(w) for w in words])
        return (per_word > 0).all(axis=0), per_word.sum(axis=0)

    def _word_scores(self, word: str) -> np.ndarray:
        """Every caption's BM25 score for one word, kept: a server sees the same words again and again,
        and asking BM25 for them cost more than the rest of the keyword match (results/bench/labelled.md
        measures the answer stage with it). At most WORD_CACHE_BYTES of them, the least recent dropped."""
        if self._scores is None:  # lru_cache: thread-safe, and bounded by the captions' count
            size = max(16, WORD_CACHE_BYTES // max(1, 4 * len(self.texts)))
            self._scores = functools.lru_cache(maxsize=size)(self._score_word)
        return self._scores(word)

    def _score_word(self, word: str) -> np.ndarray:
        scores = np.asarray(self.bm25.get_scores([word]))
        scores.setflags(write=False)
        return scores

    def match(self, q: np.ndarray, texts: Optional[Sequence[str]] = None,
              allowed: Optional[np.ndarray] = None) -> List[Match]:
        """Per query (unit rows of the text encoder; ``texts`` its words, if known): the promoted items.
        ``allowed``: the item rows a filter keeps (None: all)."""
        cos = np.asarray(q, np.float32) @ self.vectors.T
        keep = np.ones(len(self.rows), bool) if allowed is None else np.isin(self.rows, allowed)
        out = []
        tokens = _tokenize(texts) if texts is not None and self.vocab else None  # all queries in one call
        for r in range(len(q)):
            close = (cos[r] >= self.threshold) & keep
            words, score = self._keywords(tokens[r]) if tokens is not None else (np.zeros(len(keep), bool), None)
            words &= keep & ~close
            first = np.flatnonzero(close)[np.argsort(-cos[r][close], kind="stable")]
            then = np.flatnonzero(words)[np.argsort(-score[words], kind="stable")] if words.any() else first[:0]
            idx = np.concatenate([first, then])
            if len(idx) > 1:  # an item with two captions that both match is promoted once, at its best place
                _, once = np.unique(self.rows[idx], return_index=True)
                idx = idx[np.sort(once)]
            out.append(Match(self.rows[idx], cos[r][idx].astype(np.float64),
                             ["caption" if close[i] else "keywords" for i in idx]))
        return out


def promote(match: Match, ids: np.ndarray, scores: np.ndarray, secondary: np.ndarray,
            k: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Optional[str]]]:
    """The top ``k``: the promoted items first, then the route's list (``ids`` with their scores) without
    them. A promoted item's score is its caption's cosine, its secondary NaN; ``how`` says which were."""
    head = match.rows[:k]
    if not len(head):  # nothing promoted (most queries): the route's list as it is
        ids = np.asarray(ids, np.int64)[:k]
        return ids, np.asarray(scores, np.float64)[:k], np.asarray(secondary, np.float64)[:k], [None] * len(ids)
    rest = ~np.isin(ids, head)
    n = k - len(head)
    out_ids = np.concatenate([head, np.asarray(ids, np.int64)[rest][:n]])
    out_scores = np.concatenate([match.cosine[:k], np.asarray(scores, np.float64)[rest][:n]])
    out_secondary = np.concatenate([np.full(len(head), np.nan), np.asarray(secondary, np.float64)[rest][:n]])
    return out_ids, out_scores, out_secondary, list(match.how[:k]) + [None] * (len(out_ids) - len(head))
