"""Background anchors: a bank of (picture, caption) pairs from another domain, beside the user's own.

A user's anchor set is often a few hundred pairs of one domain. Relativising against a second,
generic bank as well, each block on its own (its own centring, whitening and top k) and adding the
bank's score with a weight, gives every query and item a second, independent reading of what it
resembles; on the single-view picture suites it raised validation and test R@10 on every source
(scripts/background_experiment.py, results/experiments/background). The bank's rows are stored
after the collection's own anchors (``anchors.parquet``), and the projector's ``background`` /
``background_weight`` parameters (retrieval/core/relative.py) say how many and how much, so a
collection opens, answers, classifies and takes additions with them like any other anchors; they
are never among the collection's searchable texts.

The default bank for image anchor sets (one picture per caption, or views) is every emoji Noto
Color Emoji draws (Debian ``fonts-noto-color-emoji``), captioned with its name: rendered once into
the cache, encoded once per encoder (cached by content like any anchor set). With views it raised
the emoji views default on its validation folds too (results/experiments/background/views.md).
Sound sets get none by default: the one offline sound bank found, Tux Paint's 121 stamp sounds, did
not help text <-> audio (results/sounds).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from retrieval.build.anchors import AnchorSet, load_anchor_set
from retrieval.errors import InputError, RetrievalError
from retrieval.store.cache import default_cache_dir

log = logging.getLogger(__name__)

EMOJI = "emoji"
NONE = "none"
# The weight of the bank's score, and the bank's captions: chosen by the best mean validation R@10
# over the four picture suites, the rest of the default held (results/experiments/background).
DEFAULT_WEIGHT = 1.5
TEMPLATE = "an emoji of {}"
# "none" switches the default bank off (for machines without the emoji font, and the test suite,
# whose fake encoders would otherwise encode 1,700 emoji in every session); an explicit
# ``background=`` always wins.
ENV = "RETRIEVAL_BACKGROUND"


def default_spec(anchor_set: AnchorSet, spec: Optional[str]) -> str:
    """What ``spec`` (None: the default) means for these anchors: ``"none"``, ``"emoji"`` or a path."""
    if spec is not None:
        spec = str(spec)
        if spec in (NONE, EMOJI) or os.path.exists(spec):
            return spec
        raise InputError(f"expected --background 'emoji', 'none' or an anchor table or folder, got {spec!r} "
                         f"(no such file)")
    if anchor_set.modality != "image":
        return NONE
    return os.environ.get(ENV, EMOJI) or EMOJI


def check_weight(weight) -> float:
    import math

    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise InputError(f"expected a finite background weight > 0, got {weight!r} (for no bank at all, pass "
                         f"--background none)")
    return float(weight)


def resolve(spec: str, anchor_set: AnchorSet, *, explicit: bool,
            show_progress_bar: Optional[bool] = None) -> Optional[AnchorSet]:
    """The bank for ``spec`` (see :func:`default_spec`) less the rows the anchors already have
    (:func:`without_duplicates`), or None. The default emoji bank that cannot be had (no emoji font
    or names here) is skipped with a warning; asked for by name, it is an error."""
    if spec == NONE:
        return None
    if spec == EMOJI:
        try:
            bank = emoji_bank(show_progress_bar=show_progress_bar)
        except RetrievalError as exc:
            if explicit:
                raise
            log.warning("no background bank: the default emoji bank is unavailable here (%s); pass "
                        "--background none to silence this, or --background PATH for a bank of your own", exc)
            return None
    else:
        bank = load_anchor_set(spec)
        if bank.modality != anchor_set.modality or bank.has_views:
            raise InputError(f"expected background anchors pairing {anchor_set.modality} with text, one row per "
                             f"concept, got {bank.modality} anchors{' with views' if bank.has_views else ''} from "
                             f"{spec!r}")
    kept = without_duplicates(bank, anchor_set.paths, anchor_set.captions)
    if kept is None and explicit:
        log.warning("no background bank: every pair of %s is already among the anchors", bank.source)
    return kept


def without_duplicates(bank: AnchorSet, paths, captions) -> Optional[AnchorSet]:
    """The bank without the rows whose caption (case and spaces aside) or picture (its bytes) is
    among the anchors'; None when nothing is left.

    A bank helps as a *second* reading from another domain. Rows the anchors already hold only count
    them again, at the bank's weight: emoji anchors (the demo's five styles, or Noto alone) with the
    emoji bank scored the picture suites' captions below the anchors alone (Tux Paint R@10 0.423 ->
    0.380, Scratch 0.424 -> 0.386; docs/research/README.md), so those rows are dropped.
    """
    from retrieval.store.arrow import sha256_file

    seen_captions = {str(c).strip().casefold() for c in captions}
    seen_files = {sha256_file(p) for p in paths}
    keep = [i for i, (p, c) in enumerate(zip(bank.paths, bank.captions))
            if str(c).strip().casefold() not in seen_captions and sha256_file(p) not in seen_files]
    if len(keep) < len(bank):
        log.info("background bank %s: %d of its %d pairs are already among the anchors and are left out",
                 bank.source, len(bank) - len(keep), len(bank))
    if not keep:
        return None
    if len(keep) == len(bank):
        return bank
    return AnchorSet([bank.paths[i] for i in keep], [bank.captions[i] for i in keep], source=bank.source,
                     modality=bank.modality)


def emoji_bank(show_progress_bar: Optional[bool] = None) -> AnchorSet:
    """Every emoji the Noto font draws, captioned by :data:`TEMPLATE` with its name; rendered once
    into the cache (``$RETRIEVAL_CACHE/background/emoji``)."""
    from retrieval.datasets import emoji

    paths, captions = emoji.noto_pairs(Path(default_cache_dir()) / "background" / "emoji", TEMPLATE,
                                       show_progress_bar=show_progress_bar)
    return AnchorSet(paths, captions, source=EMOJI, modality="image")


def stored_bank(manifest, purpose: str, paths, captions) -> AnchorSet:
    """The background bank a collection was built with, read again (to encode it with another
    encoder: ``purpose``), less the rows its anchors (``paths``, ``captions``) already have, as at the
    build, and checked against the content hash its manifest records."""
    entry = manifest["anchors"]["background"]
    try:
        bank = emoji_bank(show_progress_bar=False) if entry["source"] == EMOJI else load_anchor_set(entry["source"])
        bank = without_duplicates(bank, paths, captions) or bank
    except RetrievalError as exc:
        raise InputError(f"expected the collection's background bank {entry['source']!r} to {purpose}, but it cannot "
                         f"be read here: {exc}") from exc
    if bank.content_hash != entry["content_hash"]:
        raise InputError(f"expected the collection's background bank {entry['source']!r} as built (sha256 "
                         f"{entry['content_hash'][:12]}…), got other content (sha256 {bank.content_hash[:12]}…); "
                         f"rebuild the collection, or reanchor it, to use the bank as it is now")
    return bank
