"""Write the golden collections and their answers: ``python -m tests.golden.make`` (from the repo root).

Collections written by the product as it was when this ran (the fake encoders of tests/conftest.py, a
few kilobytes each), and every answer they gave then: ``tests/test_golden.py`` reopens them with the
product as it is now and requires the same answers to the last bit. Run it again only when a format
change is *meant* to change answers, and say so in the commit.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA, COLLECTIONS, ANSWERS = HERE / "data", HERE / "collections", HERE / "answers.json"
FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", audio_encoder="fake-audio", cache_dir="",
            show_progress_bar=False)
# name -> build options beyond FAKE: every backend, each projector idea on and off, views, a bank, a pivot set
CONFIGS = {
    "plain": dict(k=3, p=2.0, center=False, whiten=0.0),
    "exact": dict(k=3, p=2.0),
    "inverted": dict(k=3, p=2.0, index="inverted"),
    "faiss": dict(k=4, p=3.0, index="faiss"),
    "torch": dict(k=3, p=2.0, index="torch"),
    "whiten": dict(k=3, p=2.0, center=True, whiten=9.0),
    "centre": dict(k=5, p=1.0, center=True, whiten=0.0),
    "cosine": dict(kind="cosine", center=True),
    "cosine-plain": dict(kind="cosine", center=False, whiten=0.0, index="inverted"),
    "bank": dict(k=3, p=2.0, whiten=9.0, background="bank", background_weight=0.5,
                 image_encoder="fake-labelled-image"),
    "views": dict(k=3, p=2.0, whiten=9.0, anchors="views"),
    "pivot": dict(k=3, p=2.0, pivots="tones"),
}
TEXTS = ["a red square", "green", "blue box paint", "purple noise", "orange"]
LABELS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "grey"]


def register_fakes() -> None:
    """The tests' fake encoders in the registry (what the ``fake_encoders`` fixture does per test)."""
    from retrieval.encoders import registry
    from tests import conftest as c

    def factory(cls):
        return lambda arg, *, name, device, modality: cls(name=name, device=device)

    for name, mods, cls in (("fake-image", ("image",), c.FakeImageEncoder), ("fake-text", ("text",), c.FakeTextEncoder),
                            ("fake-audio", ("audio",), c.FakeAudioEncoder),
                            ("fake-labelled-image", ("image",), c.FakeLabelledImageEncoder)):
        registry.REGISTRY[name] = registry.Backend(mods, False, True, "test fake", factory(cls))


def write_data() -> dict:
    """The media (relative paths inside tests/golden/data) the collections are built from."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from tests.conftest import COLOURS, PITCH, solid, tone

    for sub in ("anchors", "corpus", "bank", "views", "tones"):
        (DATA / sub).mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for c in names:
        solid(DATA / "anchors" / f"{c}.png", c, size=40)
        solid(DATA / "corpus" / f"{c}.png", c, size=24)
        (DATA / "corpus" / f"{c}.txt").write_text(f"{c} box", encoding="utf-8")
        solid(DATA / "bank" / f"{c}.png", c, size=48)
        solid(DATA / "views" / f"{c}-a.png", c, size=40)
        img = Image.new("RGB", (40, 40), (128, 128, 128))
        img.paste(Image.new("RGB", (20, 20), COLOURS[c]), (10, 10))
        img.save(DATA / "views" / f"{c}-b.png")
        tone(DATA / "tones" / f"{c}.wav", PITCH[c], seconds=0.4)
        (DATA / "tones" / f"{c}.txt").write_text(f"a {c} noise", encoding="utf-8")
    pq.write_table(pa.table({"image": [f"anchors/{c}.png" for c in names], "caption": [f"a {c} square" for c in names]}),
                   DATA / "anchors.parquet")
    pq.write_table(pa.table({"image": [f"bank/{c}.png" for c in names], "caption": [f"{c} paint" for c in names]}),
                   DATA / "bank.parquet")
    pq.write_table(pa.table({"image": [f"views/{c}-{s}.png" for c in names for s in "ab"],
                             "caption": [f"a {c} square" for c in names for _ in "ab"],
                             "concept": [c for c in names for _ in "ab"]}), DATA / "views.parquet")
    return {"anchors": DATA / "anchors.parquet", "views": DATA / "views.parquet", "bank": DATA / "bank.parquet",
            "tones": DATA / "tones", "corpus": DATA / "corpus"}


def options(name: str, paths: dict) -> dict:
    o = dict(FAKE, **CONFIGS[name])
    anchors = str(paths[o.pop("anchors", "anchors")])
    if "background" in o:
        o["background"] = str(paths[o["background"]])
    else:
        o["background"] = "none"
    if "pivots" in o:
        o["pivots"] = [str(paths[o["pivots"]])]
    return {"anchors": anchors, **o}


def _hits(hits) -> list:
    return [[h.id, h.kind, np.float32(h.score).tobytes().hex()] for h in hits]


def answers(folder: Path) -> dict:
    """Every answer the collection gives: each route of text, image and (where built) sound queries,
    to items and to texts, and classification of its own items and of a file."""
    from retrieval import Collection
    from retrieval.planning import ROUTES

    col = Collection.open(folder)
    n = len(col.item_ids)
    queries = {"text": TEXTS, "image": [str(DATA / "anchors" / "red.png"), str(DATA / "bank" / "blue.png")]}
    if "audio" in col.manifest["encoders"]:
        queries["audio"] = [str(DATA / "tones" / "green.wav")]
    out = {}
    for modality, qs in queries.items():
        for target in ("image", "text"):
            for route in (None, *ROUTES):
                key = f"{modality}->{target}:{route or 'auto'}"
                try:
                    # cross-modal answers only: the caption match came after these were recorded
                    out[key] = [_hits(h) for h in col.search_many(qs, k=n, modality=modality, target=target,
                                                                   route=route, captions=False)]
                except Exception as exc:  # a route this collection cannot take: its refusal is an answer too
                    out[key] = type(exc).__name__
    for key, inputs in (("classify:items", None), ("classify:file", [str(DATA / "bank" / "green.png")])):
        # each top label with its ASIF similarity (what a prediction's score was when these were recorded;
        # scores are now the signals' standardised sum, whose order the ASIF similarities still decide here)
        vecs = col.sides[col.modality].abs if inputs is None else col.encoder(col.modality).encode(inputs)
        asif = col.classifier(LABELS).scores(vecs)
        out[key] = [[[lab, np.float32(a[LABELS.index(lab)]).tobytes().hex()] for lab in pred.labels]
                    for pred, a in zip(col.classify(inputs, LABELS, k=3), asif)]
    return out


def main() -> int:
    sys.path.insert(0, str(HERE.parents[1]))  # run as a file too; as a module this is already so
    from retrieval import build_collection

    register_fakes()
    shutil.rmtree(DATA, ignore_errors=True)
    shutil.rmtree(COLLECTIONS, ignore_errors=True)
    paths = write_data()
    recorded = {}
    for name in CONFIGS:
        o = options(name, paths)
        folder = build_collection(str(paths["corpus"]), o.pop("anchors"), COLLECTIONS / name, **o)
        recorded[name] = answers(folder)
        print(f"{name}: {sum(1 for v in recorded[name].values() if not isinstance(v, str))} answers")
    ANSWERS.write_text(json.dumps(recorded, indent=0, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
