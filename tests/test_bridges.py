"""The bridges measured beside ASIF (retrieval/evaluation/methods.py, pictures.py) and the Debian
picture sources, on data whose answer is known."""

import numpy as np
import pytest

from retrieval.core.metrics import retrieval_metrics
from retrieval.datasets import pictures
from retrieval.evaluation import methods as M
from retrieval.evaluation.suites.pictures import PictureTask, reverse_rows, source_rows, split


def test_csa_recovers_a_linear_relation_between_two_spaces():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    mix = rng.normal(size=(16, 24))
    y = x @ mix + 0.01 * rng.normal(size=(400, 24))
    s = M.csa(x[:300], y[:300], x[300:], y[300:], reg=1e-3)
    assert retrieval_metrics(s, np.arange(100))["R@1"] > 0.95
    # unrelated spaces: chance, not an artefact of the method
    s = M.csa(x[:300], rng.normal(size=(300, 24)), x[300:], y[300:], reg=1.0)
    assert retrieval_metrics(s, np.arange(100))["R@10"] < 0.4


def test_hubness_correction_lowers_the_items_every_query_likes():
    scores = np.array([[0.9, 0.8], [0.9, 0.1]])  # item 0 is a hub: the best for both queries
    bank = np.array([[0.95, 0.1], [0.9, 0.2], [0.92, 0.0]])
    fixed = M.hubness_corrected(scores, bank, alpha=0.5, k=3)
    assert fixed[0].argmax() == 1 and fixed[1].argmax() == 0
    assert np.allclose(M.hubness_corrected(scores, bank, alpha=0.0), scores)


def test_picture_rows_hold_the_baseline_and_the_default():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(120, 8)).astype(np.float32)
    i = (t @ rng.normal(size=(8, 12))).astype(np.float32)
    classes = rng.normal(size=(5, 8)).astype(np.float32)
    logits = rng.normal(size=(120, 5)).astype(np.float32)
    names = [f"concept {j}" for j in range(120)]
    anchor, query, folds = split(names, "test:")
    assert not set(anchor) & set(query) and all(set(v) <= set(anchor) for _, v in folds)

    def task(a, q):
        return PictureTask(t[a], i[a], t[q], i[q], logits[q], classes)
    rows = source_rows(task(anchor, query), [task(a, q) for a, q in folds])
    names = [r["method"] for r in rows]
    assert names[0] == "chance" and names[1].startswith("plain ASIF") and "engine default" in names[-1]
    assert all(0 <= r["R@10"] <= 1 for r in rows)
    assert rows[1]["R@10"] > 3 * rows[0]["R@10"]  # a linear relation: ASIF finds it well above chance
    gain = rows[-1]["gain R@10"]  # the default against the baseline, query by query
    assert gain["gain"] == pytest.approx(rows[-1]["R@10"] - rows[1]["R@10"])
    assert gain["low"] <= gain["gain"] <= gain["high"] and gain["queries"] == len(query)
    back = reverse_rows(task(anchor, query))  # image -> text on the same split, with its own interval
    assert back[1]["method"].startswith("plain ASIF") and "engine default" in back[-1]["method"]
    assert back[-1]["gain R@10"]["gain"] == pytest.approx(back[-1]["R@10"] - back[1]["R@10"])


def test_caption_cleaning_and_concepts():
    assert pictures.concept_of("A frog.") == "frog" and pictures.concept_of("An Adelaide Rosella.") == "adelaide rosella"
    assert pictures._clean_title("arbre_modern_bw") == "arbre modern bw"
    assert pictures._clean_title("tigre05") == "tigre" and pictures._clean_title("08_waningcrescent_openclipart") == "waningcrescent"


def test_scratch_costumes_are_named_by_file():
    try:
        pics = pictures.load("scratch")
    except Exception as exc:  # noqa: BLE001 - setup installs scratch; elsewhere the message says how
        assert "apt-get install scratch" in str(exc)
        pytest.skip(str(exc))
    by_concept = {p.concept for p in pics}
    assert "bat" in by_concept and all(p.caption == f"a picture of {p.concept}" for p in pics)
    assert not any("Letters" in p.path for p in pics)
    with pytest.raises(Exception, match="expected a picture source"):
        pictures.load("nope")
