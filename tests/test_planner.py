"""The planner is pure: these tests load no model and touch no file."""

import pytest

from retrieval.errors import InputError
from retrieval.planner import QUALITY_PRIOR, Bridge, plan

SPACES = {"image": "efficientnet-lite0", "text": "minilm"}
ANCHORS = Bridge("anchors", ("image", "text"), "emoji")
T2I = Bridge("translator", ("text", "image"), "orthogonal")
SIZES = {"items": 10_000, "anchors": 1000, "k": 256, "dim_text": 384, "dim_image": 1280}


def test_cross_modal_goes_through_the_anchors():
    p = plan("text", "image", SPACES, [ANCHORS], sizes=SIZES)
    assert p.route == "relative" and p.query.encoder == "minilm" and p.target.encoder == "efficientnet-lite0"
    assert "relativise against the text side of anchors emoji" in p.explain()


def test_same_space_uses_raw_embeddings_unless_forced():
    assert plan("image", "image", SPACES, [ANCHORS]).route == "absolute"
    with pytest.raises(InputError, match=r"route 'relative' is impossible .* possible: \['absolute'\]"):
        plan("image", "image", SPACES, [ANCHORS], route="relative")


def test_translation_route_and_fusion_are_enumerated_with_estimates():
    p = plan("text", "image", SPACES, [ANCHORS, T2I], sizes=SIZES)
    routes = {r.route: r for r in p.alternatives}
    assert set(routes) == {"relative", "translation", "fusion"}
    assert p.route == max(routes.values(), key=lambda r: r.quality).route == "relative"
    assert routes["fusion"].cost == routes["relative"].cost + routes["translation"].cost
    assert plan("text", "image", SPACES, [ANCHORS, T2I], route="translation").route == "translation"
    text = p.explain()
    assert "<- chosen" in text and "translation" in text and "fusion" in text


def test_translator_is_directional():
    p = plan("text", "image", SPACES, [T2I])
    assert p.route == "translation"
    with pytest.raises(InputError, match=r"no route from image .* linked by \['translator -> text/image'\]"):
        plan("image", "text", SPACES, [T2I])


def test_no_route_lists_what_exists():
    with pytest.raises(InputError, match=r"no route from text \(minilm\) to image .* linked by \['anchors <-> image/audio'\]"):
        plan("text", "image", SPACES, [Bridge("anchors", ("image", "audio"))])
    with pytest.raises(InputError, match=r"one of this collection's spaces \['image', 'text'\], got a query in 'audio'"):
        plan("audio", "image", SPACES, [ANCHORS])


def test_impossible_or_unknown_forced_route():
    with pytest.raises(InputError, match=r"route 'absolute' is impossible .* possible: \['relative'\]"):
        plan("text", "image", SPACES, [ANCHORS], route="absolute")
    with pytest.raises(InputError, match="expected a route in"):
        plan("text", "image", SPACES, [ANCHORS], route="teleport")


def test_quality_priors_prefer_the_measured_best_single_route():
    # never worse than the best single route: fusion is not chosen over relative
    assert QUALITY_PRIOR["relative"] >= max(QUALITY_PRIOR["translation"], QUALITY_PRIOR["fusion"])
