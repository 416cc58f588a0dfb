"""The planner is pure: these tests load no model and touch no file."""

import pytest

from retrieval.errors import InputError, UnsupportedQueryError
from retrieval.planning.planner import PAIR_PRIOR, QUALITY_PRIOR, Bridge, plan

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


AUDIO_SPACES = {"image": "efficientnet-lite0", "text": "minilm", "audio": "aisfx"}
SOUNDS = Bridge("anchors", ("audio", "text"), "sounds", indexed=False)
PIVOT_SIZES = dict(SIZES, dim_audio=512, anchors_audio_text=114)


def test_pivot_route_goes_through_a_third_space():
    p = plan("audio", "image", AUDIO_SPACES, [ANCHORS, T2I, SOUNDS], sizes=PIVOT_SIZES)
    assert (p.route, p.via, p.then) == ("pivot", "text", "relative")
    assert [r.route for r in p.alternatives] == ["pivot"]
    assert p.steps[0] == "encode query with aisfx"
    assert "relativise against the audio side of anchors sounds" in p.steps[1]
    assert p.steps[2].startswith("pivot into text (minilm)")
    assert p.steps[3].startswith("then relativise against the text side of anchors emoji")
    # its estimate is the hop factor times the continuation's, and it costs more than the continuation
    direct = plan("text", "image", AUDIO_SPACES, [ANCHORS, T2I], sizes=PIVOT_SIZES)
    assert p.alternatives[0].quality < direct.alternatives[0].quality
    assert p.alternatives[0].cost > direct.alternatives[0].cost
    assert "pivot(text, relative)" in p.explain()


def test_pivot_to_the_pivot_space_itself_ends_with_a_plain_search():
    p = plan("audio", "text", AUDIO_SPACES, [ANCHORS, SOUNDS], sizes=PIVOT_SIZES)
    assert (p.route, p.via, p.then) == ("pivot", "text", "absolute")


def test_a_pivot_set_gives_no_direct_relative_route():
    # the collection's texts are relativised against the image-text anchors, not the sound-text ones
    p = plan("audio", "text", AUDIO_SPACES, [ANCHORS, SOUNDS])
    assert p.route == "pivot"


def test_no_pivot_when_a_direct_route_exists():
    p = plan("text", "image", AUDIO_SPACES, [ANCHORS, SOUNDS])
    assert p.route == "relative" and "pivot" not in {r.route for r in p.alternatives}
    with pytest.raises(InputError, match=r"route 'pivot' is impossible from text to image; possible: \['relative'\]"):
        plan("text", "image", AUDIO_SPACES, [ANCHORS, SOUNDS], route="pivot")


def test_no_pivot_without_a_route_onwards():
    # audio links to text, but nothing links text to image: no route at all, and the error says what exists
    with pytest.raises(InputError, match=r"no route from audio \(aisfx\) to image .*'anchors <-> audio/text \(pivot\)'"):
        plan("audio", "image", AUDIO_SPACES, [SOUNDS])


def test_measured_pair_priors_override_the_defaults():
    spaces = {"audio": "aisfx", "text": "minilm"}
    bridges = [Bridge("anchors", ("audio", "text")), Bridge("translator", ("text", "audio")),
               Bridge("translator", ("audio", "text"))]
    t2a, a2t = plan("text", "audio", spaces, bridges), plan("audio", "text", spaces, bridges)
    # the measured best of both audio suites pooled; the defaults alone would take relative
    assert (t2a.route, a2t.route) == ("fusion", "fusion")
    assert max(QUALITY_PRIOR[r] for r in ("relative", "translation", "fusion")) == QUALITY_PRIOR["relative"]
    assert {r.route: r.quality for r in t2a.alternatives}["translation"] == PAIR_PRIOR[("text", "audio")]["translation"]


def test_a_plan_is_json_ready_data():
    import json

    from retrieval.planning.planner import Bridge, plan

    p = plan("text", "image", {"image": "efficientnet-lite0", "text": "minilm"},
             [Bridge("anchors", ("image", "text")), Bridge("translator", ("text", "image"))])
    d = json.loads(json.dumps(p.to_dict()))
    assert d["route"] == p.route and d["query"] == {"modality": "text", "encoder": "minilm"}
    assert [a["route"] for a in d["alternatives"]] == [r.route for r in p.alternatives]
    assert d["steps"] == list(p.steps) and d["target"]["modality"] == "image"


def test_a_stitched_query_takes_the_route_measured_best_for_it():
    """results/stitching: for image -> image the stitch route (map into the build's space, then the
    absolute route) beat the stitched relative route; for image -> text the relative route, which
    equals a re-encoded collection's, beat the stitch."""
    from retrieval.planning.planner import STITCH_HOP, STITCH_SAME_MODALITY

    spaces = {"image": "A", "text": "T"}
    bridges = [Bridge("anchors", ("image", "text")), Bridge("translator", ("image", "text")),
               Bridge("translator", ("text", "image"))]
    same = plan("image", "image", spaces, bridges, query_encoder="B")
    assert same.route == "stitch" and same.then == "absolute" and same.query.encoder == "B"
    assert {r.route: r.quality for r in same.alternatives} == {"stitch": STITCH_HOP * 1.0,
                                                                "relative": STITCH_SAME_MODALITY}
    assert plan("image", "text", spaces, bridges, query_encoder="B").route == "relative"
    assert plan("image", "image", spaces, bridges).route == "absolute"  # its own encoder: no stitching
    with pytest.raises(UnsupportedQueryError, match="possible"):
        plan("image", "image", spaces, bridges, route="translation", query_encoder="B")
