"""Self-anchoring: the corpus's own captioned items become anchor pairs beside the given anchors.

A corpus is often partly described (titles, alt text, sidecar notes). Those (item, caption) pairs
are of the user's own domain, the best anchors there are. Merged as they come into a set of another
domain (say 1,758 emoji), a few of them *lower* recall: every corpus item resembles the corpus's own
pictures more than any emoji, so every relative vector piles onto the same few in-domain anchors
(Tux Paint, 5 % captioned, emoji anchors: R@10 0.483 alone, 0.333 merged; results/captions).

So the given anchors are first moved into the corpus's domain: each side's given anchors are
translated so that their mean is the corpus's (the items' mean on the media side, the captions'
mean on the text side), then the captioned items are appended. Each domain then sits around the
same centre and the in-domain pairs add what they know instead of attracting everything (the same
setting: 0.503; 30 % captioned: 0.485 -> 0.633). The translated vectors are what the collection
stores as its anchors, so its projectors refit exactly when it is opened; nothing else changes.

Whether the merge is kept is decided on the captioned items themselves: cut into folds by caption,
each fold's captions search the corpus for their items with anchors made of the rest, with and
without self-anchoring (text -> media, R@10, the recipe's relative route). It is kept unless it
loses by more than one standard error of the paired difference; with fewer than
:data:`MIN_VALIDATED` captions it is kept unvalidated (it won in every setting measured). An item
is never an anchor for its own query there. Captions that are blank, repeat an earlier caption or a
given anchor's are skipped and counted; at most :data:`MAX_SELF` items become anchors (each anchor
costs every vector a cosine), chosen by a stable hash of the caption.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from retrieval.build.anchors import AnchorSet
from retrieval.build.options import BuildOptions, default_k_p
from retrieval.build.recipe import AnchorShape, Recipe
from retrieval.core.folds import fold_of, stable_hash
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.projector import fit_projector

log = logging.getLogger(__name__)

MAX_SELF = 4096       # corpus items that become anchors at most
MIN_VALIDATED = 40    # captions needed to validate the merge (10 a fold)
FOLDS = 4
GALLERY = 4096        # corpus items a validation fold searches at most (its targets always among them)
GUARD = 1.0           # standard errors by which the merge must lose to be dropped
AT = 10


@dataclasses.dataclass
class Corpus:
    """What self-anchoring reads of a corpus: the rows, their vectors, the captioned rows and their
    caption vectors (in the order of ``captioned``)."""

    rows: List[Dict]
    item_vecs: np.ndarray
    captioned: Sequence[int]
    cap_vecs: np.ndarray


@dataclasses.dataclass
class SelfAnchoring:
    """The anchors to build with (the given ones when the merge is not kept), their recipe, the
    manifest's record (None: self-anchoring did not apply), and the given anchors' caption vectors as
    encoded (the texts a collection lists are those, not the moved ones)."""

    anchor_set: AnchorSet
    a_med: np.ndarray
    a_txt: np.ndarray
    rec: Recipe
    record: Optional[Dict]
    given_txt: Optional[np.ndarray] = None


def wanted(o: BuildOptions, modality: str) -> bool:
    """Whether to self-anchor: as asked, else for image collections only. Sounds measured a little
    lower with their own domain's anchors (named sounds, 30 % captioned: R@10 0.516 alone, 0.505;
    scripts/self_anchor_sounds.py) and have no suite of another domain's anchors yet."""
    return o.self_anchors if o.self_anchors is not None else modality == "image"


def given_count(entry: Dict) -> int:
    """Of a manifest's anchors entry, the rows that are the given anchors (the corpus's own follow)."""
    own = entry.get("self") or {}
    return int(entry["count"]) - (int(own["count"]) if own.get("kept") else 0)


def in_corpus_domain(vectors: np.ndarray, entry: Dict) -> np.ndarray:
    """Stored anchor rows encoded again by another encoder (stitching), moved as the build moved them:
    the given rows translated to the mean of the corpus's own rows. That is the build's move for
    text; for media the build used every item's mean, which only the collection's own encoder has,
    and the captioned items' mean stands in for it. Unchanged without kept self-anchors."""
    own = entry.get("self") or {}
    if not own.get("kept"):
        return vectors
    n, m = given_count(entry), int(own["count"])
    out = np.array(vectors, np.float32, copy=True)
    out[:n] += (out[n:n + m].mean(0, dtype=np.float64) - out[:n].mean(0, dtype=np.float64)).astype(np.float32)
    return out


def key(caption: str) -> str:
    return " ".join(str(caption).casefold().split())


def pairs(corpus: Corpus, given_captions: Sequence[str]) -> Tuple[np.ndarray, Dict]:
    """Indices into ``corpus.captioned`` of the captions that become anchors, and the counts of those
    skipped: repeats of an earlier caption or of a given anchor's, and those over :data:`MAX_SELF`."""
    seen = {key(c) for c in given_captions}
    kept, repeated = [], 0
    for j, row in enumerate(corpus.captioned):
        k = key(corpus.rows[row]["caption"])
        if not k or k in seen:
            repeated += bool(k)
            continue
        seen.add(k)
        kept.append(j)
    # in the order of a stable hash of the caption: the same pairs and order whatever the corpus's row order
    kept.sort(key=lambda j: (stable_hash(key(corpus.rows[corpus.captioned[j]]["caption"])),
                             key(corpus.rows[corpus.captioned[j]]["caption"])))
    over = max(0, len(kept) - MAX_SELF)
    return np.asarray(kept[:MAX_SELF], np.int64), {"repeated": repeated, "over_max": over}


def merged(a_med: np.ndarray, a_txt: np.ndarray, s_med: np.ndarray, s_txt: np.ndarray,
           corpus_mean: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The given anchors translated to the corpus's means (media: the items', text: the captions'),
    then the self pairs: (media rows, text rows)."""
    med = np.asarray(a_med, np.float32) - np.asarray(a_med, np.float64).mean(0) + corpus_mean
    txt = np.asarray(a_txt, np.float32) - np.asarray(a_txt, np.float64).mean(0) + np.asarray(s_txt, np.float64).mean(0)
    return (np.vstack([med.astype(np.float32), s_med]).astype(np.float32),
            np.vstack([txt.astype(np.float32), s_txt]).astype(np.float32))


def corpus_mean(item_vecs: np.ndarray, block: int = 65536) -> np.ndarray:
    """The float64 mean of the items, in blocks (a memory-mapped corpus is never copied whole)."""
    total = np.zeros(item_vecs.shape[1], np.float64)
    for i in range(0, len(item_vecs), block):
        total += np.asarray(item_vecs[i:i + block], np.float64).sum(0)
    return total / len(item_vecs)


def resized(rec: Recipe, n: int, anchor_set: AnchorSet, o: BuildOptions, media_encoder: Optional[str]) -> Recipe:
    """The recipe for ``n`` anchors of this set's kind: its k as a build of that size takes it."""
    shape = AnchorShape(n, anchor_set.modality, anchor_set.has_views, anchor_set.source)
    return dataclasses.replace(rec, k=default_k_p(shape, o.k, o.p, media_encoder)[0])


def hits(rec: Recipe, med: np.ndarray, txt: np.ndarray, bank, queries: np.ndarray, gallery: np.ndarray,
         targets: np.ndarray) -> np.ndarray:
    """Per query, R@10 of its target as the recipe's relative route scores it (with its tie-break)."""
    spec = rec.spec(n_bank=0 if bank is None else len(bank[0]))
    pt = fit_projector(spec, txt, bank=None if bank is None else bank[2])
    pm = fit_projector(spec, med, bank=None if bank is None else bank[1])
    scores = lexicographic((pt.transform(queries) @ pm.transform(gallery).T).toarray(),
                           pt.dense(queries) @ pm.dense(gallery).T)
    return query_recall(scores, targets, AT)


def validate(given: Tuple[np.ndarray, np.ndarray], corpus: Corpus, chosen: np.ndarray, size_recipe, bank) -> Dict:
    """Self-anchoring against the given anchors alone, on folds of the chosen captions (see the
    module docstring): the mean R@10 of each, their paired gain and its standard error."""
    rows = np.asarray(corpus.captioned, np.int64)[chosen]
    caps = [key(corpus.rows[r]["caption"]) for r in rows]
    folds, mean = fold_of(caps, FOLDS, "self-anchors"), corpus_mean(corpus.item_vecs)
    rng, n_items, alone, merged_hits = np.random.default_rng(0), len(corpus.item_vecs), [], []
    for f in range(FOLDS):
        held, rest = chosen[folds == f], chosen[folds != f]
        if not len(held) or not len(rest):
            continue
        others = np.setdiff1d(np.arange(n_items), rows[folds == f])
        others = rng.choice(others, min(len(others), GALLERY - len(held)), replace=False) if len(others) else others
        gallery = np.concatenate([rows[folds == f], np.sort(others)])
        g, q, t = np.asarray(corpus.item_vecs[gallery], np.float32), corpus.cap_vecs[held], np.arange(len(held))
        alone.append(hits(size_recipe(len(given[0])), *given, bank, q, g, t))
        med, txt = merged(*given, np.asarray(corpus.item_vecs[np.asarray(corpus.captioned)[rest]], np.float32),
                          corpus.cap_vecs[rest], mean)
        merged_hits.append(hits(size_recipe(len(med)), med, txt, bank, q, g, t))
    a, m = np.concatenate(alone), np.concatenate(merged_hits)
    d = m - a
    return {"folds": FOLDS, "queries": int(len(d)), "alone": round(float(a.mean()), 4),
            "self": round(float(m.mean()), 4), "gain": round(float(d.mean()), 4),
            "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4) if len(d) > 1 else 0.0}


def self_anchored(anchor_set: AnchorSet, a_med: np.ndarray, a_txt: np.ndarray, corpus: Corpus, rec: Recipe,
                  o: BuildOptions, media_encoder: Optional[str], bank=None, style=None) -> SelfAnchoring:
    """The anchors a build uses: the given ones, or (when the corpus has captions and validation
    does not object) the given ones moved to the corpus's domain plus the captioned items.
    ``bank``: the background bank as (AnchorSet, media vectors, text vectors), or None; ``style``:
    the style normaliser learned from anchors with views, or None."""
    unchanged = SelfAnchoring(anchor_set, a_med, a_txt, rec, None)
    if not wanted(o, anchor_set.modality) or not len(corpus.captioned):
        return unchanged
    if style is not None:  # learned from the views of the given anchors alone; not measured with more
        return dataclasses.replace(unchanged, record={"kept": False, "why": "anchors with views are not self-anchored"})
    chosen, skipped = pairs(corpus, anchor_set.captions)
    record = {"captioned": len(corpus.captioned), "count": int(len(chosen)), "skipped": skipped}
    if not len(chosen):
        return dataclasses.replace(unchanged, record=dict(record, kept=False, why="no caption that is not already an anchor's"))

    def size_recipe(n):
        return resized(rec, n, anchor_set, o, media_encoder)

    if len(chosen) >= MIN_VALIDATED:
        record["validation"] = validate((a_med, a_txt), corpus, chosen, size_recipe, bank)
        v = record["validation"]
        if v["gain"] < -GUARD * v["se"]:
            log.info("self-anchoring dropped: validation R@10 %.3f with, %.3f without", v["self"], v["alone"])
            return dataclasses.replace(unchanged, record=dict(record, kept=False, why="lost on validation"))
    rows = [int(np.asarray(corpus.captioned)[j]) for j in chosen]
    med, txt = merged(a_med, a_txt, np.asarray(corpus.item_vecs[rows], np.float32), corpus.cap_vecs[chosen],
                      corpus_mean(corpus.item_vecs))
    joined = AnchorSet(list(anchor_set.paths) + [corpus.rows[r]["path"] for r in rows],
                       list(anchor_set.captions) + [corpus.rows[r]["caption"] for r in rows], source=anchor_set.source,
                       content_hash=anchor_set.content_hash, modality=anchor_set.modality, vectors={anchor_set.modality: med})
    log.info("self-anchoring: %d captioned corpus items join the %d given anchors", len(rows), len(anchor_set))
    why = "kept by validation" if "validation" in record else f"kept unvalidated (fewer than {MIN_VALIDATED} captions)"
    return SelfAnchoring(joined, med, txt, size_recipe(len(med)), dict(record, kept=True, why=why), a_txt)
