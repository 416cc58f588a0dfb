"""The embedded default demo: real emoji data, offline, end to end in a few minutes on 2 CPU cores.

Anchors are Noto Color Emoji, OpenMoji, Fluent Emoji, EmojiOne and EmojiOne v1 drawings captioned
"an emoji of NAME" (the
drawings of a concept are merged into one anchor, and a style normaliser is learned from them; a
style whose npm package setup did not install is left out, and Noto alone is used when none is, or
cairosvg is missing); the corpus is the Twemoji
drawings of the same concepts. No picture is on both sides, and Twemoji's style is not among the anchors: the engine has to get from a sentence
to a Twemoji image only through the other pictures and their captions.

Sounds (Debian's scratch and freedesktop sound effects, captioned from their names) join in two
ways: as pivot anchors of the emoji collection, so that a sound finds pictures through text, and as
a small sound collection searched with text.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from retrieval.api import Collection, accuracy, build_collection, read_labels
from retrieval.cli.output import projector_words
from retrieval.datasets import emoji, sounds
from retrieval.errors import InputError

QUERIES = ("an emoji of a red apple", "an emoji of a dog face", "an emoji of a rocket",
           "an emoji of a birthday cake", "an emoji of the flag of Japan")
# Sounds held out of the pivot anchors and used as queries, fixed before looking at any result.
# Their twins (Dog2, Trumpet2) stay among the anchors: this shows the seen regime of results/sounds.
SOUND_QUERIES = ("Dog1", "Rooster", "BellToll", "Trumpet1")
SOUND_TEXT_QUERIES = ("the sound of a bell", "the sound of a camera shutter", "the sound of a phone ringing")
STEPS = 6


def invocation() -> str:
    """How to run this command again from here: ``retrieval`` when the shell finds this very script,
    else its path (after setup, ``.venv/bin/retrieval``: the venv is on PATH only once activated)."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me) != "retrieval" or not os.path.isfile(me):
        return f"{sys.executable} -m retrieval"  # started some other way (python -m, a notebook)
    found = shutil.which("retrieval")
    if found and os.path.samefile(found, me):
        return "retrieval"
    rel = os.path.relpath(me)
    return me if rel.startswith("..") else rel


def run_demo(out="indexes/emoji-demo", data="indexes/.emoji-data", limit: Optional[int] = None,
             show_progress_bar: Optional[bool] = None) -> int:
    if limit is not None and limit < 1:
        raise InputError(f"expected --limit >= 1 (number of emoji concepts), got {limit}")
    t0 = time.perf_counter()
    must = ["red apple"] + (["dog face", "rocket", "birthday cake", "flag: Japan"] if limit else [])
    must += [sounds.EMOJI_OF[s] for s in SOUND_QUERIES] if limit else []
    styles = " + ".join(["Noto"] + [st.title for st in emoji.SVG_STYLES.values()])
    print(f"[1/{STEPS}] rendering {styles} anchors (the npm styles where setup installed them) and collecting "
          f"Twemoji corpus into {data} …", flush=True)
    paths = emoji.prepare(data, limit=limit, names=must if limit else None, show_progress_bar=show_progress_bar,
                          views=True)
    if "views_skipped" in paths:  # the npm drawings (installed by setup) are optional: Noto alone still works
        print(f"      (views skipped: {paths['views_skipped']})")
    anchors = paths.get("anchors_views", paths["anchors"])
    try:
        sound_paths = sounds.prepare(Path(data) / "sounds", exclude=SOUND_QUERIES)
        scratch = {s.name: s.path for s in sounds.find_sounds(("scratch",))}
    except InputError as exc:  # the sound part is optional: the image demo still runs
        print(f"      (sounds skipped: {exc})")
        sound_paths, scratch = None, {}
    print(f"[2/{STEPS}] building {out} (EfficientNet-Lite0 at two depths + MiniLM text, ASIF relative vectors"
          f"{'; aiSFX sounds as pivot anchors' if sound_paths else ''}) …", flush=True)
    # the corpus's captions are the emoji's names, which the searches below look for: self-anchoring on
    # them would find the pictures by their names, and the demo is about finding them by what they show
    build_collection(paths["corpus"], anchors, out, overwrite=True, show_progress_bar=show_progress_bar,
                     pivots=[sound_paths["sounds"]] if sound_paths else (), self_anchors=False)
    col = Collection.open(out)
    info = col.info()
    views = (f" ({paths.get('views_styles')} drawings of each, {info['anchors']['views']} images, merged; style normaliser "
             f"learned from them)" if info["anchors"].get("views") else " (Noto)")
    print(f"      {info['counts']['items']} Twemoji images, {info['counts']['anchors']} anchors{views}, "
          f"{projector_words(info)}"
          + "".join(f"; {pv['count']} sound anchors" for pv in info["pivots"]))
    print(f"[3/{STEPS}] text -> image search (top 5; caption shown is the corpus image's own name):", flush=True)
    for q, hits in zip(QUERIES, col.search_many(list(QUERIES), k=5)):
        print(f"  {q!r}")
        for h in hits:
            print(f"     {h.rank}. {h.score:.3f}  {h.caption}")
    print(f"[4/{STEPS}] ASIF zero-shot classification of the corpus into Unicode emoji groups:", flush=True)
    labels = read_labels(paths["labels"])
    preds = col.classify(None, labels, templates=["an emoji of {}", "an emoji from the category {}"])
    top1, top3 = accuracy(preds, col.items["label"], 1), accuracy(preds, col.items["label"], 3)
    print(f"  {len(labels)} groups, {len(preds)} images: top-1 {top1:.3f}, top-3 {top3:.3f} "
          f"(chance top-1 {1 / len(labels):.3f})")
    if sound_paths:
        _sound_demo(col, scratch, Path(data), out, show_progress_bar)
    print(f"done in {time.perf_counter() - t0:.0f} s. Try: {invocation()} search {out} \"an emoji of a cat\" -k 5")
    return 0


def _sound_demo(col: Collection, scratch, data: Path, out: str, show_progress_bar) -> None:
    print(f"[5/{STEPS}] sound -> image through text (planner route: {col.plan('audio').route}, "
          f"via {col.plan('audio').via}); each sound was left out of the anchors:", flush=True)
    queries = [scratch[s] for s in SOUND_QUERIES]
    for name, q, hits in zip(SOUND_QUERIES, queries, col.search_many(queries, k=5, modality="audio")):
        want = sounds.EMOJI_OF[name]
        full = col.search(q, k=len(col.items["path"]), modality="audio")
        rank = next((h.rank for h in full if h.caption == emoji.CAPTION.format(want)), None)
        print(f"  {Path(q).name} (the {want} emoji is at rank {rank}):  " + ", ".join(
            h.caption.replace("an emoji of ", "") for h in hits))
    snd_out = str(Path(out).with_name(Path(out).name + "-sounds"))
    print(f"[6/{STEPS}] text -> sound: {snd_out}, the freedesktop event sounds searched through "
          f"scratch's named sounds as anchors:", flush=True)
    table = sounds.write_table(sounds.find_sounds(("scratch",)), data / "sounds" / "scratch.csv")
    build_collection(sounds.FREEDESKTOP_DIR, table, snd_out, overwrite=True, show_progress_bar=show_progress_bar)
    snd = Collection.open(snd_out)
    for q, hits in zip(SOUND_TEXT_QUERIES, snd.search_many(list(SOUND_TEXT_QUERIES), k=3)):
        print(f"  {q!r} ({snd.plan('text').route}): " + ", ".join(Path(h.path).stem for h in hits))
