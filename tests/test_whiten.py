"""Shrinkage whitening before relativising (retrieval/core/whiten.py): the maths, the projector, builds."""

import json

import numpy as np
import pytest

from retrieval.core.projector import RelativeProjector
from retrieval.core.whiten import whitening_matrix
from retrieval.errors import InputError
from tests.conftest import flat


def correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.linspace(3.0, 0.1, d)[:, None]  # a few strong directions
    return rng.normal(size=(n, d)) @ mix + 1.5


def test_without_shrinkage_the_anchors_come_out_white():
    x = correlated(4000, 6)
    xc = x - x.mean(0)
    w = whitening_matrix(xc, 1e-9)
    cov = (xc @ w).T @ (xc @ w) / len(xc)
    np.testing.assert_allclose(cov / cov.trace() * 6, np.eye(6), atol=1e-3)
    raw = xc.T @ xc / len(xc)
    assert np.linalg.cond(cov) < 1.01 < np.linalg.cond(raw)


def test_strong_shrinkage_is_plain_centring_and_a_middle_value_is_neither():
    anchors, x = correlated(200, 8, 1), correlated(20, 8, 2)
    centred = RelativeProjector(k=200, p=1.0, kind="cosine", center=True).fit(anchors)
    huge = RelativeProjector(k=200, p=1.0, kind="cosine", center=True, whiten=1e9).fit(anchors)
    np.testing.assert_allclose(huge.transform(x), centred.transform(x), atol=1e-5)
    mid = RelativeProjector(k=200, p=1.0, kind="cosine", whiten=1.0).fit(anchors)
    assert np.abs(mid.transform(x) - centred.transform(x)).max() > 0.05


def test_the_projector_whitens_unit_vectors_after_removing_the_anchor_mean():
    anchors, x = correlated(120, 5, 3), correlated(7, 5, 4)
    lam = 2.0
    unit = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    mu = unit.mean(0)
    cov = (unit - mu).T @ (unit - mu) / len(unit)
    e, v = np.linalg.eigh(cov)
    w = v @ np.diag((e + lam * e.mean()) ** -0.5) @ v.T  # the textbook form, before any rescaling

    def prep(y):
        y = (y / np.linalg.norm(y, axis=1, keepdims=True) - mu) @ w
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    ref = prep(x) @ prep(anchors).T
    proj = RelativeProjector(k=4, p=2.0, center=False, whiten=lam).fit(anchors)  # whitening centres anyway
    np.testing.assert_allclose(proj.dense(x), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    top = np.argsort(-ref, axis=1, kind="stable")[:, :4]
    assert [sorted(r) for r in top] == [sorted(proj.transform(x)[i].indices) for i in range(len(x))]


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf"), "strong", None])
def test_a_bad_strength_is_refused_saying_what_was_expected(lam):
    with pytest.raises(InputError, match="expected a whitening strength lambda >= 0"):
        RelativeProjector(k=2, whiten=lam).fit(np.eye(3, dtype=np.float32))


def test_anchors_that_never_vary_give_the_identity_not_a_crash():
    same = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (5, 1))
    assert np.array_equal(whitening_matrix(same - same.mean(0), 9.0), np.eye(3, dtype=np.float32))
    out = RelativeProjector(k=2, p=2.0, whiten=9.0).fit(same).transform(np.ones((2, 3), np.float32))
    assert np.isfinite(out.toarray()).all()


def test_params_name_whitening_only_when_on_and_round_trip():
    assert "whiten" not in RelativeProjector(k=3, center=True).get_params()  # manifests as before
    params = RelativeProjector(k=3, p=2.0, center=True, whiten=9.0).get_params()
    assert params["whiten"] == 9.0
    anchors, x = correlated(50, 4, 5), correlated(3, 4, 6)
    a = RelativeProjector(k=3, p=2.0, center=True, whiten=9.0).fit(anchors).transform(x)
    b = RelativeProjector(**params).fit(anchors).transform(x)
    assert (a != b).nnz == 0


def test_default_builds_whiten_single_view_images_and_record_it(tiny_data, fake_encoders, tmp_path):
    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.build.options import DEFAULT_WHITEN
    from retrieval.store.arrow import sparse_from_columns

    kw = dict(image_encoder="fake-image", text_encoder="fake-text", k=3, p=2.0, cache_dir=str(tmp_path / "cache"))
    on = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "on", **kw)
    off = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "off", whiten=0, **kw)
    read = lambda f: flat(json.loads((f / "manifest.json").read_text()))  # noqa: E731
    assert read(on)["whiten"] == DEFAULT_WHITEN
    assert "whiten" not in read(off)  # what every collection before whitening records
    col_on, col_off = Collection.open(on), Collection.open(off)
    # opened again, the projector is refitted on the stored anchors: the stored vectors are reproduced
    table = pq.read_table(on / "items.parquet")
    stored = sparse_from_columns(table.column("rel_indices"), table.column("rel_values"), col_on.manifest["anchors"]["count"])
    again = col_on.projectors["image"].transform(np.asarray(col_on.sides["image"].abs))
    assert abs(again - stored).max() < 1e-6 and abs(again - col_off.projectors["image"].transform(
        np.asarray(col_off.sides["image"].abs))).max() > 1e-3
    for c in tiny_data["colours"]:
        assert col_on.search(f"a {c} square", k=1)[0].path.endswith(f"{c}.png")
        assert col_off.search(f"a {c} square", k=1)[0].path.endswith(f"{c}.png")


def test_a_bad_whiten_option_fails_before_anything_is_written(tiny_data, fake_encoders, tmp_path):
    from retrieval import build_collection

    with pytest.raises(InputError, match="whitening strength"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "bad", image_encoder="fake-image",
                         text_encoder="fake-text", k=3, whiten=-2)
    assert not (tmp_path / "bad").exists()


def test_a_format_4_collection_opens_unwhitened_and_answers_as_before(tiny_data, fake_encoders, tmp_path):
    """What every collection written before whitening looks like: format 4, projector without "whiten"."""

    from retrieval import Collection, build_collection

    from .conftest import as_older_format

    kw = dict(image_encoder="fake-image", text_encoder="fake-text", k=3, p=2.0, cache_dir=str(tmp_path / "cache"))
    plain = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "plain", whiten=0, **kw)
    assert "whiten" not in flat(json.loads((plain / "manifest.json").read_text()))
    old = as_older_format(plain, tmp_path / "old", 4)
    a, b = Collection.open(plain), Collection.open(old)
    assert b.manifest["format_version"] == 4 and "whiten" not in [s.name for s in b.projectors["image"].steps]
    for c in tiny_data["colours"]:
        ha, hb = a.search(f"a {c} square", k=4), b.search(f"a {c} square", k=4)
        assert [(h.id, h.score) for h in ha] == [(h.id, h.score) for h in hb]
