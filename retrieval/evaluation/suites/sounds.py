"""sounds: text <-> audio retrieval over named sound effects, and audio -> image search through the
pivot route."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from retrieval.core.folds import fold_of, stable_hash
from retrieval.core.metrics import lexicographic, paired_interval, query_recall, retrieval_metrics
from retrieval.evaluation import methods as M
from retrieval.evaluation.harness import CAPTION, METRIC_COLS, Suite, chance, row
from retrieval.evaluation.report import Report
from retrieval.evaluation.suites.pictures import CSA_GRID as PICTURE_CSA_GRID
from retrieval.evaluation.suites.pictures import NNN_GRID

SOUND_CAPTION = "the sound of {}"


def mask_twins(scores: np.ndarray, q_words, g_words, targets) -> np.ndarray:
    """Gallery sounds with the same name as the target (Dog1, Dog2) are not counted against it."""
    scores = scores.copy()
    for i, t in enumerate(targets):
        twins = np.flatnonzero((g_words == q_words[i]) & (np.arange(len(g_words)) != t))
        scores[i, twins] = -np.inf
    return scores


def halves(words, salt: str, splits: Optional[int] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(anchor rows, query rows) of each half of ``splits`` (default SPLITS) random two-fold splits,
    each cut at the median of a stable hash of the words, so that twins share a half and the halves
    are as even as the twins allow. Several splits, because with about 75 anchors a side which sounds
    land among the anchors moves R@10 by up to 0.11 (the suites print each split's); at the median, because
    cut at 0.5 one split of 149 sounds left 53 anchors against 96 queries."""
    parts = []
    for r in range(SPLITS if splits is None else splits):
        h = np.array([stable_hash(f"{salt}{r}:{w}") for w in words])
        fold = h < np.median(h)
        parts += [(np.flatnonzero(~test), np.flatnonzero(test)) for test in (fold, ~fold)]
    return parts


class Folds:
    """The repeated two-fold splits of a sound set (:func:`halves`): each half's sounds are queries
    against anchors from the other, twins masked."""

    def __init__(self, snd, salt: str):
        self.snd, self.parts, self.n = snd, halves(snd.words, salt), len(snd.names)

    def scores(self, direction: str, fn, **kw) -> List[np.ndarray]:
        """Each half's score matrix by ``fn(aq, ag, q, g, **kw)``, ``k`` capped at the half's anchors."""
        snd, mats = self.snd, []
        for anc, gal in self.parts:
            if direction == "t2a":
                aq, ag, q, g = snd.captions[anc], snd.audio[anc], snd.captions[gal], snd.audio[gal]
            else:
                aq, ag, q, g = snd.audio[anc], snd.captions[anc], snd.audio[gal], snd.captions[gal]
            sc = fn(aq, ag, q, g, **({**kw, "k": min(kw["k"], len(anc))} if "k" in kw else kw))
            mats.append(mask_twins(sc, snd.words[gal], snd.words[gal], np.arange(len(gal))))
        return mats

    @staticmethod
    def metrics(mats) -> Dict[str, float]:
        ms = [retrieval_metrics(m, np.arange(len(m))) for m in mats]
        w = np.array([len(m) for m in mats], float)
        return {key: float(np.average([x[key] for x in ms], weights=w)) for key in ms[0]}

    def hits(self, mats) -> np.ndarray:
        """Each query's R@10 term, averaged over the splits."""
        h = np.zeros(self.n)
        for (_, gal), m in zip(self.parts, mats):
            h[gal] += query_recall(m, np.arange(len(m)), 10)
        return h / SPLITS


def text_audio(report: Report, snd, *, salt: str, bank=None) -> Dict:
    """Text <-> audio over named sounds, by repeated two-fold splits: SPLITS times the sounds are cut
    in halves by a stable hash of their words (twins share a half) and each half's sounds are queries
    against anchors from the other. Metrics are averaged over every split and half, each query's R@10
    term over the splits (the paired interval's unit). Returns {"routes": direction -> R@10 per planner
    route, "tables": the rows, "hits": each query's R@10 term per method, "queries": n, "per split":
    each split's R@10 per route and plain ASIF}. ``bank``:
    (caption vectors, audio vectors, what it is) of a sound bank from another package, or None."""
    folds = Folds(snd, salt)
    routes, tables, hits, spread = {}, {}, {}, {}
    for direction, label in (("t2a", "text -> audio"), ("a2t", "audio -> text")):
        rows, mats = direction_rows(folds, direction, salt, bank)
        n = folds.n
        hits[label] = {name: folds.hits(m) for name, m in mats.items()}
        report.table(f"{label}: each half's {n // 2}-odd queries against anchors from the other, {SPLITS} "
                     f"random two-fold splits averaged ({n} queries)", ["method"] + METRIC_COLS, rows,
                     note="CSA's regulariser, width and weighting and NNN's strength are chosen per test half by "
                          f"the mean R@10 over {VAL_FOLDS} validation folds of that half's anchors (each held out "
                          "in turn as queries against the rest), never on the test half.")
        routes[label] = {"relative": rows[1][3], "translation": rows[6][3], "fusion": rows[8][3]}
        tables[label] = [dict(zip(["method"] + METRIC_COLS, r)) for r in rows]
        # how much the split alone moves a figure: each split's R@10, both its halves pooled
        spread[label] = {name: [folds.metrics(m[2 * r:2 * r + 2])["R@10"] for r in range(SPLITS)]
                         for name, m in (("plain", mats["plain"]), ("relative", mats["relative"]),
                                         ("translation", mats["translation"]), ("fusion", mats["fusion"]))}
        report.text(f"Each split's R@10 ({label}): " + "; ".join(
            f"{name} " + " ".join(f"{v:.3f}" for v in vals) + f" (range {max(vals) - min(vals):.3f})"
            for name, vals in spread[label].items()) + ".")
    return {"routes": routes, "tables": tables, "hits": hits, "queries": folds.n, "per split": spread}


def direction_rows(folds: Folds, direction: str, salt: str, bank=None) -> Tuple[List, Dict[str, List[np.ndarray]]]:
    """(every method's row in one direction, the score matrices of the baseline and the planner's
    routes). Rows 1, 6 and 8 are the routes' (relative, translation, fusion)."""
    from retrieval.build.options import DEFAULT_K, DEFAULT_WHITEN

    rec = engine_recipe()
    # whitening named only when the recipe turns it on for sounds (it does not: measured below)
    asif_kw = dict(k=rec.k, p=rec.p, center=rec.center, **({"whiten": rec.whiten} if rec.whiten else {}))
    score, metrics = folds.scores, folds.metrics
    rel = score(direction, M.asif, **asif_kw)
    tr = score(direction, M.translate, method="orthogonal")
    fused = [M.rrf(a, b) for a, b in zip(rel, tr)]
    plain = score(direction, M.asif, k=64, p=8.0, center=False)
    csa_cfgs, nnn_cfgs = [], []
    csa = score(direction, _chosen(M.csa, CSA_GRID, csa_cfgs, salt))
    nnn = score(direction, _chosen(M.asif_nnn, NNN_GRID, nnn_cfgs, salt, **asif_kw))
    rows = [row("chance", metrics([np.zeros_like(m) for m in rel])),
            row(f"relative: ASIF engine default (k=min({DEFAULT_K}, anchors))", metrics(rel)),
            row("plain ASIF k=64 p=8, no centring (baseline)", metrics(plain)),
            row(f"ASIF default + shrinkage whitening (lambda {DEFAULT_WHITEN:g}; not the sound default)",
                metrics(score(direction, M.asif, **dict(asif_kw, whiten=DEFAULT_WHITEN)))),
            row("ASIF k=16 p=4 centred", metrics(score(direction, M.asif, k=16, p=4.0, center=True))),
            row("dense cosine relative, centred", metrics(score(direction, M.cosine_relative, center=True))),
            row("translation: orthogonal (Procrustes)", metrics(tr)),
            row("translation: affine", metrics(score(direction, M.translate, method="affine"))),
            row("fusion (RRF) of relative + Procrustes", metrics(fused)),
            row(f"CSA: regularised CCA, correlation-weighted cosine (chosen on validation: {_cfgs(csa_cfgs)})",
                metrics(csa)),
            row("relative + NNN hubness correction, reference bank the anchors' own side "
                f"(chosen on validation: {_cfgs(nnn_cfgs)})", metrics(nnn))]
    if bank is not None:  # measured, not the default (docs/research: a sound bank)
        rows += bank_rows(direction, bank, score, metrics, asif_kw)
    return rows, {"plain": plain, "relative": rel, "translation": tr, "fusion": fused}


SPLITS = 5     # repeated two-fold splits of a sound suite (each a new stable hash of the words)
VAL_FOLDS = 2  # folds of a test half's anchors on which CSA's and NNN's settings are chosen
# the picture suites' grids; CSA's widths smaller, as a sound half's validation anchors are some 40
CSA_GRID = [dict(cfg, dims=d) for cfg in PICTURE_CSA_GRID if cfg["dims"] is None for d in (None, 16, 32)]


def _chosen(fn, grid, picked: list, salt: str, **fixed):
    """A scorer that first picks ``fn``'s setting from ``grid`` by mean R@10 (then MRR) over VAL_FOLDS
    folds of the anchors it is given, then scores the queries with it; each pick is appended to ``picked``."""
    def kw_of(cfg):
        return {("k_bank" if key == "k" and "alpha" in cfg else key): v for key, v in cfg.items()}

    def score(aq, ag, q, g):
        vf = fold_of(range(len(aq)), VAL_FOLDS, salt)
        best, best_m = None, None
        for cfg in grid:
            ms = []
            for f in range(VAL_FOLDS):
                tr, va = np.flatnonzero(vf != f), np.flatnonzero(vf == f)
                sc = fn(aq[tr], ag[tr], aq[va], ag[va], **fixed, **kw_of(cfg))
                ms.append(retrieval_metrics(sc, np.arange(len(va))))
            m = (np.mean([x["R@10"] for x in ms]), np.mean([x["MRR"] for x in ms]))
            if best_m is None or m > best_m:
                best, best_m = cfg, m
        picked.append(best)
        return fn(aq, ag, q, g, **fixed, **kw_of(best))
    return score


def _cfgs(picked: list) -> str:
    """The setting picked most often, how often, and how many distinct ones were picked."""
    from collections import Counter

    text = [", ".join(f"{k} {v if v is not None else 'all'}" for k, v in c.items()) for c in picked]
    counts = Counter(text)
    top, c = counts.most_common(1)[0]
    return f"most often {top}, {c} of {len(text)} halves; {len(counts)} distinct settings"


def route_table(report: Report, name: str, measured: Dict) -> Dict:
    """The planner's route per direction (from ``planner.PAIR_PRIOR``, which pools the audio suites),
    each route's R@10 here, and the picked route's gain over plain ASIF with its 95% interval."""
    from retrieval.planning.planner import PAIR_PRIOR

    pair = {"text -> audio": ("text", "audio"), "audio -> text": ("audio", "text")}
    route_rows, picks, gains = [], {}, {}
    for d, r in measured["routes"].items():
        recorded = PAIR_PRIOR.get(pair[d], {})
        chosen = picks[d] = max(recorded, key=recorded.get) if recorded else "relative"
        g = gains[d] = paired_interval(measured["hits"][d]["plain"], measured["hits"][d][chosen])
        route_rows.append([d, r["relative"], r["translation"], r["fusion"], chosen, max(r.values()) - r[chosen],
                           g["gain"], f"{g['low']:+.3f} … {g['high']:+.3f}"])
    n = measured["queries"]
    report.table("Routes per direction (R@10) and the planner's choice",
                 ["direction", "relative", "translation", "fusion", "planner picks", "best here - picked",
                  "picked - plain ASIF", "95% interval of that gain"], route_rows,
                 note=f"The planner picks the route with the highest R@10 in `planner.PAIR_PRIOR`, the mean of "
                      f"the audio suites' route tables (this one's and the {name} suite's) weighted by their queries; "
                      f"`tests/test_scripts.py` checks it against both suites' `summary.json`. With {n} queries "
                      f"a recall near 0.45 has a standard error of about {np.sqrt(0.45 * 0.55 / n):.3f}. The "
                      f"interval is a paired bootstrap over the {n} queries (10,000 resamples, "
                      "`retrieval.core.metrics.paired_interval`).")
    return {"routes": measured["routes"], "picks": picks, "gains": gains, "tables": measured["tables"],
            "queries": n, "splits": SPLITS, "per split R@10": measured["per split"]}


def sounds(report: Report, snd, emoji_data, bank=None) -> Dict:
    """Text <-> audio over named sounds (:func:`text_audio`); audio -> emoji images through the pivot route.
    ``bank``: (caption vectors, audio vectors, what it is) of a sound bank from another package, or None."""
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_K, DEFAULT_P

    n = len(snd.names)
    report.text(f"""
Data: {n} named sound effects from Debian's `scratch` ({int(np.sum(snd.sources == "scratch"))} clips)
and `sound-theme-freedesktop` ({int(np.sum(snd.sources == "freedesktop"))}) packages, captioned "{snd.caption_template}" with words from the file
name ("HorseGallop" -> "horse gallop"). This is a small set, not a benchmark: a half holds about
{n // 2} sounds, so one query moves a half's R@1 by about {2 / n:.3f}, and which sounds land among the
anchors moves R@10 by several hundredths; so every row is averaged over {SPLITS} random two-fold
splits, and the gains carry a paired-bootstrap interval over the {n} queries. Every ASIF row but the baseline uses the engine default (k = min({DEFAULT_K}, anchors),
p = {DEFAULT_P:g}, centred = {DEFAULT_CENTER}) chosen on the picture suites. A second domain of
named sounds, General MIDI's, is `retrieval eval --suite instruments`.""")
    measured = text_audio(report, snd, salt="sounds:", bank=bank)
    rows = pivot_section(report, snd, emoji_data)
    out = dict(route_table(report, "instruments", measured), pivot=rows)
    report.data("summary.json", out)
    return out


def pivot_section(report: Report, snd, emoji_data) -> List:
    """Audio -> emoji images through the pivot route (leave one sound out), with oracle rows that
    bound it; checks planner.PIVOT_HOP against what the audio hop keeps here."""
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_K, DEFAULT_P, BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.core.projector import fit_projector, pivot
    from retrieval.datasets.sounds import EMOJI_OF

    n = len(snd.names)
    # the audio hop: an image collection's audio pivot set, from the build's recipe
    rec = recipe(AnchorShape(1 << 20, "image"), None, BuildOptions())

    names = list(emoji_data.names)
    queries = [i for i, nm in enumerate(snd.names) if nm in EMOJI_OF and EMOJI_OF[nm] in names]
    targets = np.array([names.index(EMOJI_OF[snd.names[i]]) for i in queries])
    T, In, It = emoji_data.texts[CAPTION], emoji_data.images["noto"], emoji_data.images["twemoji"]
    concept_of = np.array([names.index(EMOJI_OF[x]) if x in EMOJI_OF and EMOJI_OF[x] in names else -1
                           for x in snd.names])
    report.text(f"""
#### Audio -> image through the pivot route

{len(queries)} sounds have an emoji depicting their source, paired by hand from the names alone
(`retrieval/datasets/sounds.py`, `EMOJI_OF`, written before any result was seen): {len(set(targets))}
distinct emoji. Each sound is a query in turn (leave one out); the gallery is every Twemoji image
({len(names)} concepts, chance R@10 = {10 / len(names):.4f}). Image-text anchors are the Noto
drawings captioned "{CAPTION}". Regimes: *seen*: sound anchors = every other sound, image anchors =
every emoji concept; *unseen*: sounds of the same emoji concept and that concept's Noto anchor are
removed too, so neither hop has seen the answer.""")

    def pivot_scores(regime: str, mode: str) -> np.ndarray:
        out = np.empty((len(queries), len(names)))
        for r, (qi, t) in enumerate(zip(queries, targets)):
            keep_snd = np.arange(n) != qi
            keep_img = np.ones(len(names), bool)
            if regime == "unseen":
                keep_snd &= concept_of != t
                keep_img[t] = False
            if mode in ("soft", "soft raw"):  # a pivot set's projector, as a build makes it
                proj = fit_projector(rec.pivot_spec(int(keep_snd.sum())), snd.audio[keep_snd])
                text_q = pivot(proj, snd.captions[keep_snd], snd.audio[qi:qi + 1], center=mode == "soft")
            elif mode == "nearest":
                cand = np.flatnonzero(keep_snd)
                text_q = snd.captions[cand[np.argmax(snd.audio[cand] @ snd.audio[qi])]][None, :]
            elif mode == "own caption":
                text_q = snd.captions[qi:qi + 1]
            else:  # the emoji's own caption: the image hop alone
                text_q = T[t:t + 1]
            # the image hop: centred ASIF at the engine's plain k and p, alike in every row, since what
            # is measured (and PIVOT_HOP) is the audio hop's share of what the image hop achieves
            k_img = min(DEFAULT_K, int(keep_img.sum()))
            out[r] = M.asif(T[keep_img], In[keep_img], text_q, It, k=k_img, p=DEFAULT_P, center=DEFAULT_CENTER)[0]
        return out

    rows, r10 = [], {}
    for regime in ("seen", "unseen"):
        rows.append(row(f"{regime}: chance", chance(len(names))))
        for mode, label in (("soft", "pivot route (engine): ASIF weights over the sound anchors' centred captions"),
                            ("soft raw", "pivot, ASIF weights over the raw captions (before centring)"),
                            ("nearest", "pivot through the single nearest sound's caption"),
                            ("own caption", "oracle: the query sound's own caption, then text -> image"),
                            ("emoji caption", "oracle: the target emoji's caption, then text -> image")):
            m = retrieval_metrics(pivot_scores(regime, mode), targets)
            r10[regime, mode] = m["R@10"]
            rows.append(row(f"{regime}: {label}", m))
    report.table(f"Audio -> image (Twemoji gallery, {len(names)} concepts), {len(queries)} sound queries",
                 ["method"] + METRIC_COLS, rows,
                 note="The oracle rows are not routes the engine can take: they bound the pivot from above by "
                      "replacing the audio hop with perfect recognition (its caption) or the image hop's own "
                      "caption.")

    from retrieval.planning.planner import PIVOT_HOP

    hop = (np.mean([r10[g, "soft"] for g in ("seen", "unseen")])
           / np.mean([r10[g, "emoji caption"] for g in ("seen", "unseen")]))
    report.text(f"""
What the audio hop keeps: the pivot route's R@10, averaged over both regimes, is {hop:.2f} of what
the image hop alone achieves from the emoji's own caption. The planner's EXPLAIN estimates a pivot
as `PIVOT_HOP` x its continuation's estimate, with `PIVOT_HOP` = {PIVOT_HOP:.2f}
({'matches this measurement' if abs(PIVOT_HOP - round(hop, 2)) < 0.006 else 'STALE: update planner.PIVOT_HOP'}).""")

    return rows


def engine_recipe():
    """What ``retrieval build`` makes of a sound anchor table, from the build's own recipe (k as for a
    set too large to cap it)."""
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe

    return recipe(AnchorShape(1 << 20, "audio"), None, BuildOptions())


def bank_rows(direction: str, bank, fold_scores, fold_metrics, asif_kw) -> list:
    """Rows with a background bank of sounds appended to each fold's anchors, as the picture suites'
    default appends the emoji bank: the relative route at two weights, and Procrustes fitted on the
    anchors and the bank together."""
    import dataclasses

    from retrieval.core.projector import fit_projector

    b_text, b_audio, about = bank
    b_q, b_g = (b_text, b_audio) if direction == "t2a" else (b_audio, b_text)

    def with_bank(aq, ag, q, g, *, weight, **kw):
        # the build's projectors with a bank block (its k: the k asked for, capped at the bank)
        rec = dataclasses.replace(engine_recipe(), background_weight=weight, **kw)
        spec = rec.spec(n_bank=len(b_q))
        pq_, pg = fit_projector(spec, aq, bank=b_q), fit_projector(spec, ag, bank=b_g)
        return lexicographic((pq_.transform(q) @ pg.transform(g).T).toarray(), pq_.dense(q) @ pg.dense(g).T)

    def procrustes_bank(aq, ag, q, g):
        return M.translate(np.vstack([aq, b_q]), np.vstack([ag, b_g]), q, g, method="orthogonal")

    out = []
    for weight in (1.0, 1.5):
        out.append(row(f"relative: ASIF default + sound bank x {weight:g} ({about}; not the default)",
                       fold_metrics(fold_scores(direction, with_bank, weight=weight, **asif_kw))))
    out.append(row(f"translation: Procrustes fitted on the anchors + the sound bank ({about}; not the default)",
                   fold_metrics(fold_scores(direction, procrustes_bank))))
    return out


def sound_bank(audio_encoder, text_encoder, show_progress_bar=None):
    """(caption vectors, audio vectors, what it is) of Tux Paint's stamp sounds, or None when the
    package is not installed."""
    from retrieval.build.anchors import AnchorSet, encode_anchors
    from retrieval.datasets.sounds import find_sounds
    from retrieval.errors import InputError

    try:
        found = find_sounds(("tuxpaint",))
    except InputError:
        return None
    sset = AnchorSet([s.path for s in found], [SOUND_CAPTION.format(s.words) for s in found], source="tuxpaint-sounds",
                     modality="audio")
    kw = dict(show_progress_bar=show_progress_bar)
    return (encode_anchors(sset, text_encoder, "text", batch_size=64, **kw),
            encode_anchors(sset, audio_encoder, "audio", batch_size=16, **kw),
            f"Tux Paint's {len(found)} stamp sounds")


def run(report: Report, ctx) -> Dict:
    from retrieval.evaluation.data import load_emoji, load_sounds

    snd = load_sounds(ctx.audio, ctx.text, SOUND_CAPTION, ctx.show_progress_bar)
    bank = sound_bank(ctx.audio, ctx.text, ctx.show_progress_bar)
    if bank is None:
        report.text("The sound bank rows need Debian's tuxpaint-stamps-default (apt-get install "
                    "tuxpaint-stamps-default); not installed here, so they are left out.")
    return sounds(report, snd, load_emoji(ctx.image, ctx.text, [CAPTION], ctx.show_progress_bar), bank)


SUITE = Suite("sounds", "text<->audio retrieval over named sound effects, and audio->image search through the pivot "
              "route", run, audio=True)
