"""Validation folds over anchor concepts: the one implementation the suites and the product share.

A choice made on the same pairs it is scored on flatters itself, and a concept seen among the
anchors is easy to find again: so pairs are split by *concept* (rows that name the same thing stay
together), by a stable hash of its name (the same split on every machine and run, and a concept keeps
its side as the data grows). ``concept_split`` halves a set into anchors and test queries and cuts
the anchor half into validation folds, each held out in turn as queries against the rest.
"""

from __future__ import annotations

import hashlib
from typing import List, Sequence, Tuple

import numpy as np

Fold = Tuple[np.ndarray, np.ndarray]  # (rows fitted on, rows held out as queries)


def stable_hash(name: str) -> float:
    """A number in [0, 1) from the name alone, the same on every machine and run."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32


def fold_of(names: Sequence[str], n_folds: int, salt: str = "") -> np.ndarray:
    """Each name's validation fold, 0 .. n_folds - 1, by a hash independent of the anchor/query split."""
    return (np.array([stable_hash("validation:" + salt + str(n)) for n in names]) * n_folds).astype(int)


def validation_folds(names: Sequence[str], rows: np.ndarray, n_folds: int, salt: str = "") -> List[Fold]:
    """``rows`` (indices into ``names``) cut into ``n_folds`` concept-disjoint folds."""
    rows = np.asarray(rows)
    fold = fold_of(names, n_folds, salt)
    return [(rows[fold[rows] != f], rows[fold[rows] == f]) for f in range(n_folds)]


def concept_split(names: Sequence[str], n_folds: int, salt: str = "") -> Tuple[np.ndarray, np.ndarray, List[Fold]]:
    """(anchor rows, test query rows, validation folds of the anchor rows), split by concept name."""
    h = np.array([stable_hash(salt + str(n)) for n in names])
    anchor, query = np.flatnonzero(h < 0.5), np.flatnonzero(h >= 0.5)
    return anchor, query, validation_folds(names, anchor, n_folds, salt)
