"""Collections written before open and answer bit-identically.

``tests/golden/collections`` were written by the product of an earlier commit (``tests/golden/make.py``
says how); their every answer then (each route of each query modality, to items and to texts, and
classification) is in ``tests/golden/answers.json`` as float32 bits. Each is reopened by today's product,
as written and relabelled as each older format version that can hold it, and must answer the same: the
same results in the same order, bit-identical to the collection as written opened on the same machine,
and within a few float32 steps of the recorded bits (another CPU's BLAS kernels round differently:
AVX-512 machines differ from the recording in the last bits of some scores).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import as_older_format
from tests.golden import make

RECORDED = json.loads(make.ANSWERS.read_text())
# The oldest format each collection's contents can claim (retrieval/store/format.py): embeddings in
# .npy files are format 3, whitening 5 (every default build), a background bank 6.
OLDEST = {name: 6 if "background" in o else 5 if o.get("whiten", 9.0) else 3 for name, o in make.CONFIGS.items()}


def _close(got, want, key: str) -> None:
    """Same results in the same order; scores (float32 bits as hex) equal to within RTOL."""
    if isinstance(want, str):  # a refusal
        assert got == want, key
        return
    strip = lambda rows: [[x for x in r if not _is_bits(x)] for q in rows for r in q]  # noqa: E731
    bits = lambda rows: np.array([_float(x) for q in rows for r in q for x in r if _is_bits(x)])  # noqa: E731
    assert strip(got) == strip(want), key
    np.testing.assert_allclose(bits(got), bits(want), rtol=RTOL, atol=RTOL * 1e-2, err_msg=key)


RTOL = 1e-5  # about 80 float32 steps: rounding, not a changed computation


def _is_bits(x) -> bool:
    return isinstance(x, str) and len(x) == 8 and all(c in "0123456789abcdef" for c in x)


def _float(x: str) -> float:
    return float(np.frombuffer(bytes.fromhex(x), np.float32)[0])


def _rounded_apart(name: str) -> set:
    """The sides of a golden collection whose stored relative vectors this machine would compute with
    other anchors kept: where two anchors tie at the k-th similarity (bag-of-words captions tie
    exactly), float32 rounding picks one, and the recording CPU's rounding need not be this one's. Any
    other difference fails here: it would be a changed computation."""
    from retrieval import Collection
    from retrieval.core.ranking import TIE_EPS

    folder = make.COLLECTIONS / name
    col, apart = Collection.open(folder), set()
    for m, file in ((col.modality, "items.parquet"), ("text", "texts.parquet")):
        table = pq.read_table(folder / file)
        if "rel_indices" not in table.column_names:
            continue
        stored = [sorted(r) for r in table.column("rel_indices").to_pylist()]
        again = col.projectors[m].transform(col.sides[m].abs).tocsr()
        sims = np.sort(col.sides[m].abs @ col.anchor_vectors[m].T, axis=1)[:, ::-1]
        for i, row in enumerate(stored):
            now = sorted(again.indices[again.indptr[i]:again.indptr[i + 1]].tolist())
            if row != now:
                k = len(now)
                assert abs(sims[i, k - 1] - sims[i, k]) < TIE_EPS, (name, m, i, row, now)
                apart.add(m)
    return apart


@pytest.fixture(scope="module")
def as_written(tmp_path_factory):
    """Each golden collection's answers on this machine, opened as written (computed once)."""
    cache = {}

    def get(name, fake_encoders):
        if name not in cache:
            cache[name] = make.answers(make.COLLECTIONS / name)
        return cache[name]
    return get


def _cases():
    for name in make.CONFIGS:
        for version in range(OLDEST[name], 7):
            yield pytest.param(name, version, id=f"{name}-v{version}")


@pytest.mark.parametrize("name,version", list(_cases()))
def test_a_collection_written_before_answers_as_it_did(name, version, fake_encoders, tmp_path, as_written):
    folder = as_older_format(make.COLLECTIONS / name, tmp_path / name, version)
    got, here = make.answers(folder), as_written(name, fake_encoders)
    want = RECORDED[name]
    assert sorted(got) == sorted(want)
    for key in want:  # one by one, so a failure names the route
        assert got[key] == here[key], key
        _close(got[key], want[key], key)


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
    for key in want:  # not bit-identical: the recorded collection's vectors were computed on another CPU
        try:
            _close(got[key], want[key], key)
        except AssertionError:
            if key.split("->")[1].split(":")[0] not in _rounded_apart(name):
                raise
