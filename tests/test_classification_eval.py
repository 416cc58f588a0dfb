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


def test_every_classification_suite_reports_the_same_rows_and_curve(tmp_path):
    from retrieval.evaluation.classification import ClassTask, report_signals
    from retrieval.evaluation.report import Report
    from tests.test_classify import SPEC, domains, sides

    enc, words, ta, ia, inputs, truth = domains()
    s = sides(ta, ia, SPEC)
    task = ClassTask("tiny task", words, ["a {}"], s["image"], s["text"], inputs, truth, None, inputs)
    report = Report("tiny", "t", "cmd", {})
    out = report_signals(report, "tiny", task, enc, None)
    methods = [r["method"] for r in out["rows"]]
    assert methods[:3] == ["chance", "majority class", "plain ASIF (k=64 p=8, raw)"] and "default" in methods[-1]
    default = out["rows"][-1]
    assert default["top-1"] > 0.9 and 0 <= default["ECE"] <= 1  # these domains are easy once centred
    assert [r["top-1"] for r in out["rows"] if r["method"].endswith("alone")] == ["n/a", "n/a"]  # no head here
    assert out["abstention"][0]["coverage"] == 1.0 and "abstention-tiny-task.png" in report.figures
    assert (report.write(tmp_path) / "abstention-tiny-task.png").is_file()
