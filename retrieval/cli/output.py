"""How the command line prints: JSON lines for programs, tables for people (names escaped)."""

from __future__ import annotations

import json
import sys
from typing import Optional

from retrieval.store.projectors import pivot_summary
from retrieval.store.projectors import summary as projector_summary


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def printable(s: Optional[str]) -> str:
    """A file name or caption as it may be printed: control characters (a newline that would break
    the table, an ANSI escape that would reach the terminal) are shown escaped, as Python writes them."""
    s = "" if s is None else str(s)
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def short(s: Optional[str], width: int) -> str:
    s = printable(s)
    return s if len(s) <= width else s[: width - 1] + "…"


def short_path(s: Optional[str], width: int) -> str:
    """Paths keep their end, where the file name is."""
    s = printable(s)
    return s if len(s) <= width else "…" + s[-(width - 1):]


# Printed once above search results: what the number is, and why it may pass 1.
SCORE_NOTE = ("score: similarity of the query's and the result's relative vectors, higher is closer; a route that "
              "adds the background bank's or the label bridge's score (weighted) can pass 1; tiebrk: the dense "
              "cosine that orders equal scores (docs/how-it-works.md, 'Scores'); '=' marks an item found by its own "
              "caption (score: the caption's cosine with the query), '~' by every query word in its caption")


def table(hits, target: str) -> str:
    items = target != "text"
    lines = [f"  {'rank':>4}  {'score':>7}  {'tiebrk':>7}  {'id':>6}  " + ("path / caption" if items else "caption (source)")]
    for h in hits:
        sec = "" if h.secondary != h.secondary else f"{h.secondary:7.4f}"  # NaN check
        what = (f"{short_path(h.path, 50)}  {short(h.caption, 40)}" if items
                else f"{short(h.caption, 70)}  ({h.source})")
        mark = {"caption": "=", "keywords": "~"}.get(getattr(h, "matched", None), " ")
        lines.append(f"  {h.rank:>4}{mark} {h.score:7.4f}  {sec:>7}  {h.id:>6}  {what}")
    return "\n".join(lines)


def projector_words(m: dict, pivot: Optional[dict] = None) -> str:
    """"k=256, p=2" (or "dense cosines") for a manifest, a collection's info, or one of its pivot sets."""
    if pivot is not None:
        pr = pivot_summary(m, pivot) if "projector" in pivot else {"k": pivot["k"], "p": pivot.get("p", m["projector"]["p"])}
    else:
        pr = m["projector"] if "projector" in m else projector_summary(m)
    if "k" not in pr:
        return "dense cosines"
    return f"k={pr['k']}, p={pr['p']:g}"


def anchor_count_words(m: dict) -> str:
    """"N anchors", and the corpus's own captioned items among them apart."""
    own, n = m["anchors"].get("self") or {}, m["counts"]["anchors"]
    if not own.get("kept"):
        return f"{n} anchors"
    return f"{n - own['count']} anchors + {own['count']} captioned corpus items"


def self_anchor_words(own: dict) -> str:
    """How the corpus's captioned items joined the anchors (retrieval/build/self_anchors.py's record)."""
    v, sk = own.get("validation"), own.get("skipped", {})
    said = (f"{own['count']} of {own.get('captioned', own['count'])} captioned items joined the anchors"
            if own.get("kept") else f"not used ({own.get('why', '')})")
    checked = (f"; validation R@10 {v['self']:.3f} with them, {v['alone']:.3f} without ({v['queries']} held-out "
               f"captions)" if v else "")
    dropped = ", ".join(f"{n} {what}" for what, n in (("repeated", sk.get("repeated", 0)),
                                                      ("over the maximum", sk.get("over_max", 0))) if n)
    return said + checked + (f"; skipped {dropped}" if dropped else "") + (f" — {own['why']}" if own.get("kept") else "")


def tuning_words(tu: dict) -> str:
    """What ``build --tune`` chose (retrieval/build/tuning.py's record), in a line."""
    def said(r):
        return f"k={r['k']} p={r['p']:g}" + (f" whitened {r['whiten']:g}" if r["whiten"] else " centred" if r["center"]
                                             else "")
    kept = "kept the defaults" if tu["chosen"] == tu["default"] else f"chose {said(tu['chosen'])}"
    weighed = "".join(f"; {what} {w['chosen']:g}" + (" (the default)" if w["chosen"] == w["default"]
                                                     else f" (default {w['default']:g})")
                      for what, w in (("bank weight", tu.get("bank")), ("label weight", tu.get("labels"))) if w)
    routes = "".join(f"; {d} route {r['route']}" + (" (the priors')" if r["route"] == r["default"] else
                                                    f" (priors: {r['default']})")
                     for d, r in (tu.get("routes") or {}).items())
    return (f"{kept} on {tu['folds']} folds over {tu['concepts']} anchor concepts: validation {tu['chosen']['score']:.3f} "
            f"against the defaults' ({said(tu['default'])}) {tu['default']['score']:.3f}; {tu['tried']} of "
            f"{tu['candidates']} settings tried{weighed}{routes}; {tu['seconds']:g} s")
