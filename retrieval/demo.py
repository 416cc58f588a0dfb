"""The embedded default demo: real emoji data, offline, end to end in a few minutes on 2 CPU cores.

Anchors are Noto Color Emoji drawings captioned "an emoji of NAME"; the corpus is the Twemoji
drawings of the same concepts. No picture is on both sides: the engine has to get from a sentence
to a Twemoji image only through the Noto pictures and their captions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from .api import Collection
from .build import build_collection
from .classify import accuracy, read_labels
from .datasets import emoji

QUERIES = ("an emoji of a red apple", "an emoji of a dog face", "an emoji of a rocket",
           "an emoji of a birthday cake", "an emoji of the flag of Japan")


def run_demo(out="indexes/emoji-demo", data="indexes/.emoji-data", limit: Optional[int] = None,
             show_progress_bar: Optional[bool] = None) -> int:
    if limit is not None and limit < 1:
        from .errors import InputError

        raise InputError(f"expected --limit >= 1 (number of emoji concepts), got {limit}")
    t0 = time.perf_counter()
    must = ["red apple"] + (["dog face", "rocket", "birthday cake", "flag: Japan"] if limit else [])
    print(f"[1/4] rendering Noto anchors and collecting Twemoji corpus into {data} …", flush=True)
    paths = emoji.prepare(data, limit=limit, names=must if limit else None, show_progress_bar=show_progress_bar)
    print(f"[2/4] building {out} (EfficientNet-Lite0 images + MiniLM text, ASIF relative vectors) …", flush=True)
    build_collection(paths["corpus"], paths["anchors"], out, overwrite=True, show_progress_bar=show_progress_bar)
    col = Collection.open(out)
    info = col.info()
    print(f"      {info['counts']['items']} Twemoji images, {info['counts']['anchors']} Noto anchors, "
          f"k={info['projector']['k']}, p={info['projector']['p']}")
    print("[3/4] text -> image search (top 5; caption shown is the corpus image's own name):", flush=True)
    for q, hits in zip(QUERIES, col.search_many(list(QUERIES), k=5)):
        print(f"  {q!r}")
        for h in hits:
            print(f"     {h.rank}. {h.score:.3f}  {h.caption}")
    print("[4/4] ASIF zero-shot classification of the corpus into Unicode emoji groups:", flush=True)
    labels = read_labels(paths["labels"])
    preds = col.classify(None, labels, templates=["an emoji of {}", "an emoji from the category {}"])
    top1, top3 = accuracy(preds, col.items["label"], 1), accuracy(preds, col.items["label"], 3)
    print(f"  {len(labels)} groups, {len(preds)} images: top-1 {top1:.3f}, top-3 {top3:.3f} "
          f"(chance top-1 {1 / len(labels):.3f})")
    print(f"done in {time.perf_counter() - t0:.0f} s. Try: retrieval search {out} \"an emoji of a cat\" -k 5")
    return 0
