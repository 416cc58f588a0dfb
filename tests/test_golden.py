"""Collections written before open and answer bit-identically.

``tests/golden/collections`` were written by the product of an earlier commit (``tests/golden/make.py``
says how); their every answer then (each route of each query modality, to items and to texts, and
classification) is in ``tests/golden/answers.json`` as float32 bits. Each is reopened by today's product,
as written and relabelled as each older format version that can hold it, and must answer the same.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import as_older_format
from tests.golden import make

RECORDED = json.loads(make.ANSWERS.read_text())
# The oldest format each collection's contents can claim (retrieval/store/format.py): embeddings in
# .npy files are format 3, whitening 5 (every default build), a background bank 6.
OLDEST = {name: 6 if "background" in o else 5 if o.get("whiten", 9.0) else 3 for name, o in make.CONFIGS.items()}


def _cases():
    for name in make.CONFIGS:
        for version in range(OLDEST[name], 7):
            yield pytest.param(name, version, id=f"{name}-v{version}")


@pytest.mark.parametrize("name,version", list(_cases()))
def test_a_collection_written_before_answers_as_it_did(name, version, fake_encoders, tmp_path):
    folder = as_older_format(make.COLLECTIONS / name, tmp_path / name, version)
    got = make.answers(folder)
    want = RECORDED[name]
    assert sorted(got) == sorted(want)
    for key in want:  # one by one, so a failure names the route
        assert got[key] == want[key], key


@pytest.mark.parametrize("name", list(make.CONFIGS))
def test_a_build_today_answers_as_the_build_then(name, fake_encoders, tmp_path):
    """Today's build (format 7: projectors as steps, made by the recipe) of the same data and options
    answers exactly as the collection written then (flat projector parameters)."""
    from retrieval import build_collection
    from retrieval.store.format import FORMAT_VERSION

    o = make.options(name, {"anchors": make.DATA / "anchors.parquet", "views": make.DATA / "views.parquet",
                            "bank": make.DATA / "bank.parquet", "tones": make.DATA / "tones"})
    # self-anchoring came after these were written (its own tests: test_self_anchors.py)
    folder = build_collection(str(make.DATA / "corpus"), o.pop("anchors"), tmp_path / name, self_anchors=False, **o)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION == 7 and "projector" not in m and "projectors" in m
    got, want = make.answers(folder), RECORDED[name]
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
