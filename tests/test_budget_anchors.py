"""Anchor budgets: --n-anchors N --select METHOD keeps N of the anchor set's pairs. The selectors do
what they say on points whose answer is known; a budgeted build equals a build on exactly the pairs
it kept; bad budgets are refused before anything is encoded."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.core.selection import SELECTORS, select
from retrieval.errors import InputError, UnknownNameError
from tests.conftest import flat

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", p=2.0, self_anchors=False)  # the corpus's own pairs (test_self_anchors.py) would join the anchors


def clusters(seed=0):
    """Four tight clusters of 25 points in 8-d, on four orthogonal axes."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:4] * 5
    return np.vstack([c + rng.normal(scale=0.1, size=(25, 8)) for c in centres]), np.repeat(np.arange(4), 25)


def test_the_selectors_on_known_geometry():
    x, label = clusters()
    assert sorted(set(label[select("fps", x, 4)])) == [0, 1, 2, 3]      # spread: one per cluster
    assert sorted(set(label[select("kmeans", x, 4)])) == [0, 1, 2, 3]   # one per centroid
    corpus = x[label == 2] + 0.01                                        # the corpus lives in cluster 2
    assert set(label[select("coverage", x, 3, corpus=corpus)]) == {2}
    r = select("random", x, 10, seed=3)
    assert len(set(r.tolist())) == 10 and r.tolist() == select("random", x, 10, seed=3).tolist()
    assert select("fps", x, 100).tolist() == list(range(100))            # the whole pool is the pool
    with pytest.raises(UnknownNameError, match="known: random, fps, kmeans, coverage"):
        select("best", x, 3)
    with pytest.raises(InputError, match="from 1 to the pool's 100"):
        select("fps", x, 101)


@pytest.mark.parametrize("method", SELECTORS)
def test_a_budgeted_build_equals_a_build_on_the_pairs_it_kept(tiny_data, fake_encoders, tmp_path, method):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b", n_anchors=5,
                                           select=method, **FAKE))
    a = col.manifest["anchors"]
    assert a["count"] == 5 and a["selected"]["pool"] == 8 and a["selected"]["method"] == method
    kept = pq.read_table(col.folder / "anchors.parquet", columns=["image", "caption"])
    pq.write_table(kept, tmp_path / "kept.parquet")
    same = Collection.open(build_collection(tiny_data["corpus"], str(tmp_path / "kept.parquet"), tmp_path / "s", **FAKE))
    assert same.manifest["anchors"]["content_hash"] == a["content_hash"]
    assert flat(col.manifest) == flat(same.manifest) and flat(col.manifest)["k"] == 5
    for q in ("a red square", "blue", "a green box"):
        assert [h.id for h in col.search(q, k=4)] == [h.id for h in same.search(q, k=4)]


def test_bad_budgets_are_refused_before_encoding(tiny_data, fake_encoders, tmp_path):
    for kw, match in (({"n_anchors": 9}, "from 1 to the 8 pairs"), ({"n_anchors": 0}, "from 1 to the 8 pairs"),
                      ({"n_anchors": 3, "select": "best"}, "unknown anchor selector"),
                      ({"n_anchors": 3, "k": 5}, "k")):
        with pytest.raises((InputError, UnknownNameError), match=match):
            build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", **kw, **FAKE)
        assert fake_encoders.get("fake-image") is None or fake_encoders["fake-image"].calls == 0
    views = tiny_data["root"] / "views.parquet"
    t = pq.read_table(tiny_data["anchors"])
    pq.write_table(t.append_column("concept", pa.array(["c"] * 2 + [f"x{i}" for i in range(t.num_rows - 2)])), views)
    with pytest.raises(InputError, match="without views"):
        build_collection(tiny_data["corpus"], str(views), tmp_path / "x", n_anchors=3, **FAKE)


def test_bootstrapping_proposes_mutual_best_matches_most_confident_first():
    from retrieval.core.selection import bootstrap_pairs

    rng = np.random.default_rng(0)
    media = rng.normal(size=(60, 8))
    text = np.vstack([media[:40] + rng.normal(scale=0.2, size=(40, 8)), rng.normal(size=(20, 8))])[::-1]
    got = bootstrap_pairs(media, text, accept=25)
    assert len(got) == 25 and np.all(np.diff(got[:, 2]) <= 0)          # most confident first
    right = np.mean(got[:, 0].astype(int) == 59 - got[:, 1].astype(int))  # text row t is media row 59 - t
    assert right >= 0.95
    assert len(bootstrap_pairs(media, text, accept=0)) == 0
