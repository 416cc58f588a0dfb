"""What the classification suites measure: categorised pictures, fair ties, the rows of every suite."""

import numpy as np
import pytest

from retrieval.datasets import pictures
from retrieval.errors import InputError
from retrieval.evaluation.classification import majority, measure_scores


def test_pictures_are_categorised_by_their_top_folder(tmp_path):
    root = tmp_path / "stamps"
    for rel, caption in (("animals/mammals/cat.png", "A cat."), ("naturalforces/storm.png", "A storm."),
                         ("food/bread.png", "Bread."), ("lowercase/a.png", "The letter a."),
                         ("cartoon/tux.png", "Tux.")):
        png = root / rel
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(b"")
        png.with_suffix(".txt").write_text(caption + "\n")
    got = {p.caption: p.category for p in pictures.tuxpaint(root)}
    assert got == {"A cat.": "animals", "A storm.": "natural forces", "Bread.": "food", "Tux.": "cartoon"}
    kept = pictures.categorised("tuxpaint", root=root)  # only the chosen categories
    assert sorted(p.category for p in kept) == ["animals", "food"]
    with pytest.raises(InputError, match="expected a picture source with categories"):
        pictures.categorised("emoji")


def test_ties_at_the_top_share_the_credit():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
    m = measure_scores(scores, np.array([0, 1, 2]), prob=np.full((3, 3), 1 / 3))
    np.testing.assert_allclose(m["correct"], [0.5, 1.0, 1 / 3])
    assert m["top-5"] == 1.0 and 0 <= m["ece"] <= 1
    assert majority(np.array([0, 0, 1, 2])) == 0.5
