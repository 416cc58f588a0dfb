"""The planner is pure: these tests load no model and touch no file."""

import pytest

from retrieval.errors import InputError
from retrieval.planner import plan

SPACES = {"image": "efficientnet-lite0", "text": "minilm"}


def test_cross_modal_goes_through_the_anchors():
    p = plan("text", "image", SPACES, ["image", "text"])
    assert p.route == "relative" and p.query.encoder == "minilm" and p.target.encoder == "efficientnet-lite0"
    assert "relativise against the text anchors" in p.explain()


def test_same_space_uses_raw_embeddings_unless_forced():
    assert plan("image", "image", SPACES, ["image", "text"]).route == "absolute"
    assert plan("image", "image", SPACES, ["image", "text"], route="relative").route == "relative"


def test_no_route_lists_what_exists():
    with pytest.raises(InputError, match=r"no route from text \(minilm\) to image .* anchors link \['audio', 'image'\]"):
        plan("text", "image", SPACES, ["image", "audio"])
    with pytest.raises(InputError, match=r"one of this collection's spaces \['image', 'text'\], got a query in 'audio'"):
        plan("audio", "image", SPACES, ["image", "text"])


def test_impossible_or_unknown_forced_route():
    with pytest.raises(InputError, match=r"route 'absolute' is impossible .* possible: \['relative'\]"):
        plan("text", "image", SPACES, ["image", "text"], route="absolute")
    with pytest.raises(InputError, match="expected a route in"):
        plan("text", "image", SPACES, ["image", "text"], route="teleport")
