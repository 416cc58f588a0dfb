"""sounds: text <-> audio retrieval over named sound effects, and audio -> image search through the
pivot route."""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.metrics import lexicographic, paired_interval, query_recall, retrieval_metrics
from retrieval.datasets.emoji import stable_hash
from retrieval.evaluation import methods as M
from retrieval.evaluation.harness import CAPTION, METRIC_COLS, Suite, chance, row
from retrieval.evaluation.report import Report

SOUND_CAPTION = "the sound of {}"


def _mask_twins(scores: np.ndarray, q_words, g_words, targets) -> np.ndarray:
    """Gallery sounds with the same name as the target (Dog1, Dog2) are not counted against it."""
    scores = scores.copy()
    for i, t in enumerate(targets):
        twins = np.flatnonzero((g_words == q_words[i]) & (np.arange(len(g_words)) != t))
        scores[i, twins] = -np.inf
    return scores


def sounds(report: Report, snd, emoji_data, bank=None) -> Dict:
    """Text <-> audio across two folds of named sounds; audio -> emoji images through the pivot route.
    ``bank``: (caption vectors, audio vectors, what it is) of a sound bank from another package, or None."""
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_K, DEFAULT_P, DEFAULT_WHITEN
    from retrieval.core.relative import RelativeProjector, pivot
    from retrieval.datasets.sounds import EMOJI_OF

    n = len(snd.names)
    fold = np.array([stable_hash("sounds:" + w) < 0.5 for w in snd.words])  # by name: twins share a fold
    report.text(f"""
Data: {n} named sound effects from Debian's `scratch` ({int(np.sum(snd.sources == "scratch"))} clips)
and `sound-theme-freedesktop` ({int(np.sum(snd.sources == "freedesktop"))}) packages, captioned "{snd.caption_template}" with words from the file
name ("HorseGallop" -> "horse gallop"). This is a small smoke-test set, not a benchmark: a fold holds
about {n // 2} sounds, so one query moves R@1 by about {2 / n:.3f}; differences below ~0.1 are noise.
Nothing here was tuned: every ASIF row uses the engine default (k = min({DEFAULT_K}, anchors),
p = {DEFAULT_P:g}, centred = {DEFAULT_CENTER}) chosen on the emoji suite.""")

    # ---- A. text <-> audio, two folds by a stable hash of the sound's words ----------------------
    def fold_scores(direction: str, fn, **kw):
        mats = []
        for test in (fold, ~fold):
            anc, gal = np.flatnonzero(~test), np.flatnonzero(test)
            if direction == "t2a":
                aq, ag, q, g = snd.captions[anc], snd.audio[anc], snd.captions[gal], snd.audio[gal]
            else:
                aq, ag, q, g = snd.audio[anc], snd.captions[anc], snd.audio[gal], snd.captions[gal]
            sc = fn(aq, ag, q, g, **kw)
            mats.append(_mask_twins(sc, snd.words[gal], snd.words[gal], np.arange(len(gal))))
        return mats

    def fold_metrics(mats) -> Dict[str, float]:
        ms = [retrieval_metrics(m, np.arange(len(m))) for m in mats]
        w = np.array([len(m) for m in mats], float)
        return {key: float(np.average([x[key] for x in ms], weights=w)) for key in ms[0]}

    k_def = min(DEFAULT_K, int(min((~fold).sum(), fold.sum())))
    asif_kw = dict(k=k_def, p=DEFAULT_P, center=DEFAULT_CENTER)

    def fold_hits(mats) -> np.ndarray:  # each query's R@10 term, both folds in a row
        return np.concatenate([query_recall(m, np.arange(len(m)), 10) for m in mats])

    routes, tables, hits = {}, {}, {}
    for direction, label in (("t2a", "text -> audio"), ("a2t", "audio -> text")):
        rel = fold_scores(direction, M.asif, **asif_kw)
        tr = fold_scores(direction, M.translate, method="orthogonal")
        fused = [M.rrf(a, b) for a, b in zip(rel, tr)]
        plain = fold_scores(direction, M.asif, k=64, p=8.0, center=False)
        hits[label] = {"plain": fold_hits(plain), "relative": fold_hits(rel), "translation": fold_hits(tr),
                       "fusion": fold_hits(fused)}
        rows = [row("chance", fold_metrics([np.zeros_like(m) for m in rel])),
                row(f"relative: ASIF engine default (k={k_def})", fold_metrics(rel)),
                row("plain ASIF k=64 p=8, no centring (baseline)", fold_metrics(plain)),
                row(f"ASIF default + shrinkage whitening (lambda {DEFAULT_WHITEN:g}; not the sound default)",
                    fold_metrics(fold_scores(direction, M.asif, **asif_kw, whiten=DEFAULT_WHITEN))),
                row("ASIF k=16 p=4 centred", fold_metrics(fold_scores(direction, M.asif, k=16, p=4.0, center=True))),
                row("dense cosine relative, centred", fold_metrics(fold_scores(direction, M.cosine_relative, center=True))),
                row("translation: orthogonal (Procrustes)", fold_metrics(tr)),
                row("translation: affine", fold_metrics(fold_scores(direction, M.translate, method="affine"))),
                row("fusion (RRF) of relative + Procrustes", fold_metrics(fused))]
        if bank is not None:  # measured, not the default (docs/research: a sound bank)
            rows += bank_rows(direction, bank, fold_scores, fold_metrics, asif_kw)
        report.table(f"{label}: queries of one fold against anchors from the other, both folds pooled "
                     f"({n} queries)", ["method"] + METRIC_COLS, rows)
        routes[label] = {"relative": rows[1][3], "translation": rows[6][3], "fusion": rows[8][3]}
        tables[label] = [dict(zip(["method"] + METRIC_COLS, r)) for r in rows]

    # ---- B. audio -> image through the pivot ------------------------------------------------------
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
            if mode in ("soft", "soft raw"):
                proj = RelativeProjector(k=min(DEFAULT_K, int(keep_snd.sum())), p=DEFAULT_P, center=DEFAULT_CENTER)
                text_q = pivot(proj.fit(snd.audio[keep_snd]), snd.captions[keep_snd], snd.audio[qi:qi + 1],
                               center=mode == "soft")
            elif mode == "nearest":
                cand = np.flatnonzero(keep_snd)
                text_q = snd.captions[cand[np.argmax(snd.audio[cand] @ snd.audio[qi])]][None, :]
            elif mode == "own caption":
                text_q = snd.captions[qi:qi + 1]
            else:  # the emoji's own caption: the image hop alone
                text_q = T[t:t + 1]
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

    from retrieval.planning.planner import PAIR_PRIOR, PIVOT_HOP

    hop = (np.mean([r10[g, "soft"] for g in ("seen", "unseen")])
           / np.mean([r10[g, "emoji caption"] for g in ("seen", "unseen")]))
    report.text(f"""
What the audio hop keeps: the pivot route's R@10, averaged over both regimes, is {hop:.2f} of what
the image hop alone achieves from the emoji's own caption. The planner's EXPLAIN estimates a pivot
as `PIVOT_HOP` x its continuation's estimate, with `PIVOT_HOP` = {PIVOT_HOP:.2f}
({'matches this measurement' if abs(PIVOT_HOP - round(hop, 2)) < 0.006 else 'STALE: update planner.PIVOT_HOP'}).""")

    pair = {"text -> audio": ("text", "audio"), "audio -> text": ("audio", "text")}
    route_rows, picks, gains = [], {}, {}
    for d, r in routes.items():
        recorded = PAIR_PRIOR.get(pair[d], {})
        chosen = picks[d] = max(recorded, key=recorded.get) if recorded else "relative"
        stale = any(abs(recorded.get(x, -1) - v) > 5e-4 for x, v in r.items())
        g = gains[d] = paired_interval(hits[d]["plain"], hits[d][chosen])
        route_rows.append([d, r["relative"], r["translation"], r["fusion"], chosen, max(r.values()) - r[chosen],
                           g["gain"], f"{g['low']:+.3f} … {g['high']:+.3f}",
                           "STALE: update planner.PAIR_PRIOR" if stale else "matches"])
    report.table("Routes per direction (R@10) and the planner's choice from them",
                 ["direction", "relative", "translation", "fusion", "planner picks", "best - picked",
                  "picked - plain ASIF", "95% interval of that gain", "planner.PAIR_PRIOR"], route_rows,
                 note=f"The planner picks the route with the highest R@10 recorded in `planner.PAIR_PRIOR`, copied "
                      f"from this table. With {n} queries a recall near 0.45 has a standard error of about "
                      f"{np.sqrt(0.45 * 0.55 / n):.3f}, so the three routes are within noise of each other here. "
                      f"A pivot is offered only where no direct route exists, so it has no competitor to beat. "
                      f"The interval is a paired bootstrap over the {n} queries (10,000 resamples, "
                      f"`retrieval.core.metrics.paired_interval`).")
    out = {"routes": routes, "picks": picks, "gains": gains, "pivot": rows, "tables": tables}
    report.data("summary.json", out)
    return out


def bank_rows(direction: str, bank, fold_scores, fold_metrics, asif_kw) -> list:
    """Rows with a background bank of sounds appended to each fold's anchors, as the picture suites'
    default appends the emoji bank: the relative route at two weights, and Procrustes fitted on the
    anchors and the bank together."""
    from retrieval.build.options import DEFAULT_K
    from retrieval.core.relative import RelativeProjector

    b_text, b_audio, about = bank
    b_q, b_g = (b_text, b_audio) if direction == "t2a" else (b_audio, b_text)

    def with_bank(aq, ag, q, g, *, weight, **kw):
        bg = dict(background=len(b_q), background_weight=weight, background_k=min(DEFAULT_K, len(b_q)))  # as a build sets it
        pq_ = RelativeProjector(**kw, **bg).fit(np.vstack([aq, b_q]))
        pg = RelativeProjector(**kw, **bg).fit(np.vstack([ag, b_g]))
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
