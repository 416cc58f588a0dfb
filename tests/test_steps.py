"""Projectors as chains of fitted steps: specs round-trip, the recipe's chains are the ones old manifests
describe, a new idea is one class, and a damaged spec is refused by name."""

import json

import numpy as np
import pytest

from retrieval.build.recipe import Recipe
from retrieval.core.centre import Centre, Unit
from retrieval.core.projector import RelativeProjector, fit_projector, projector_from_spec, spec_from_params
from retrieval.core.relativisers import AsifTopK
from retrieval.core.step import REGISTRY, Chain, Step, step_from_spec
from retrieval.core.style import StyleNormaliser
from retrieval.errors import CollectionFormatError, InputError
from tests.conftest import as_older_format

RNG = np.random.default_rng(0)
ANCHORS, BANK, X = (RNG.normal(size=(n, 12)).astype(np.float32) for n in (40, 15, 9))
STYLE = StyleNormaliser.fit(np.vstack([ANCHORS[:10], ANCHORS[:10] + 0.1]), [str(i) for i in range(10)] * 2)
GRID = [dict(kind=kind, center=center, whiten=whiten, style=style, bank=bank)
        for kind in ("asif", "cosine") for center in (False, True) for whiten in (0.0, 9.0)
        for style in (False, True) for bank in (0, 15)]


def _recipe(kind, center, whiten) -> Recipe:
    return Recipe(k=5, p=2.0, kind=kind, center=center, whiten=whiten, pivot_k=4, pivot_p=3.0, label_weight=0.0,
                  background_weight=0.6, bank_k=7)


def _dense(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_the_recipe_makes_the_chain_old_manifests_describe(case):
    """What a build writes (the recipe's steps) and what a format-6 manifest's flat parameters are read
    as (spec_from_params, fixed for old collections) are the same chain, fitted to the same bits."""
    rec = _recipe(case["kind"], case["center"], case["whiten"])
    new = rec.spec(style=case["style"], n_bank=case["bank"])
    params = {"kind": rec.kind, "k": rec.k, "p": rec.p, "center": rec.center,
              **({"whiten": rec.whiten} if rec.whiten else {}),
              **({"background": case["bank"], "background_weight": 0.6, "background_k": 7} if case["bank"] else {})}
    assert new == spec_from_params(params, style=case["style"])
    style = STYLE if case["style"] else None
    bank = BANK if case["bank"] else None
    a = fit_projector(new, ANCHORS, bank=bank, style=style)
    legacy = RelativeProjector(**params, style=style).fit(np.vstack([ANCHORS, BANK]) if case["bank"] else ANCHORS)
    assert np.array_equal(_dense(a.transform(X)), _dense(legacy.transform(X)))
    assert np.array_equal(a.dense(X), legacy.dense(X))
    again = fit_projector(json.loads(json.dumps(a.to_spec())), ANCHORS, bank=bank, style=style)
    assert again.to_spec() == new and np.array_equal(_dense(again.transform(X)), _dense(a.transform(X)))


def test_every_step_is_registered_and_round_trips():
    assert {"unit", "centre", "whiten", "style", "asif", "cosine"} <= set(REGISTRY)
    for spec in ({"step": "whiten", "lam": 3.0}, {"step": "asif", "k": 4, "p": 1.5}, {"step": "centre"}):
        assert step_from_spec(spec).to_spec() == spec


def test_an_edit_of_the_chain_is_the_chain_built_without_it():
    spec = _recipe("asif", True, 9.0).spec()
    whitened = projector_from_spec(spec).fit(ANCHORS)
    plain = projector_from_spec(_recipe("asif", True, 0.0).spec()).fit(ANCHORS)
    edited = whitened.without("whiten").fit(ANCHORS)
    assert edited.to_spec() == plain.to_spec()
    assert np.array_equal(edited.transform(X).toarray(), plain.transform(X).toarray())


def test_the_bank_is_a_named_block_and_can_be_taken_away():
    proj = fit_projector(_recipe("asif", True, 9.0).spec(n_bank=15), ANCHORS, bank=BANK)
    assert list(proj.blocks) == ["anchors", "bank"] and proj.weights == {"anchors": 1.0, "bank": 0.6}
    alone = fit_projector(_recipe("asif", True, 9.0).spec(), ANCHORS)
    assert np.array_equal(proj.only("anchors").transform(X).toarray(), alone.transform(X).toarray())
    both = proj.transform(X).toarray()
    assert both.shape == (len(X), 55) and np.array_equal(both[:, :40], alone.transform(X).toarray())


class Shrink(Step):
    """A new idea for the test: scale rows towards zero (nothing else in the product changes)."""

    name = "test-shrink"
    PARAMS = ("factor",)

    def __init__(self, factor: float = 0.5):
        self.factor = factor

    def transform(self, x):
        return x * np.float32(self.factor)


def test_a_new_idea_is_one_step_class_and_one_line_of_the_chain():
    spec = [Unit().to_spec(), Shrink(0.25).to_spec(), Centre().to_spec(), Unit().to_spec(), AsifTopK(5, 2.0).to_spec()]
    proj = projector_from_spec(json.loads(json.dumps(spec))).fit(ANCHORS)
    assert isinstance(proj, Chain) and proj.steps[1].factor == 0.25 and proj.to_spec() == spec
    # a uniform shrink before centring only rescales: the relative vectors are the same as without it
    without = projector_from_spec([s for s in spec if s["step"] != "test-shrink"]).fit(ANCHORS)
    assert np.allclose(proj.transform(X).toarray(), without.transform(X).toarray(), atol=1e-6)


def test_an_unknown_or_damaged_step_is_refused_by_name(tiny_collection, tmp_path):
    with pytest.raises(CollectionFormatError, match="expected a projector step, one of .*'whiten'"):
        step_from_spec({"step": "sharpen"})
    with pytest.raises(InputError, match="named chains under 'blocks'"):
        projector_from_spec({"step": "blocks"})
    from retrieval import Collection
    from retrieval.store.format import manifest_checksum

    old = as_older_format(tiny_collection, tmp_path / "edited", 7)
    m = json.loads((old / "manifest.json").read_text())
    m["projectors"]["text"] = [{"step": "sharpen"}]
    m["manifest_sha256"] = manifest_checksum(m)
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CollectionFormatError, match="projector steps that can be rebuilt"):
        Collection.open(old)
