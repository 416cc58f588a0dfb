"""What label-balanced centring costs a classify request on the demo collection, same process.

A new classifier (``Collection._new_classifier``, what the first request with a set of labels builds)
with the corpus's plain mean (0 rounds) and with the default 3 rounds, median of 5 each, interleaved;
then a repeated request, which ``Collection.classifier`` answers from the classifiers it keeps.

    .venv/bin/python scripts/bench_classify_centring.py
"""

import functools
import time

import numpy as np

from retrieval.api import classify
from retrieval.api.collection import Collection


def main() -> None:
    col = Collection.open("indexes/emoji-demo")
    labels = [line.strip() for line in open("indexes/.emoji-data/groups.txt") if line.strip()]
    col.classifier(labels)  # warm: encoders, the corpus sample
    orig, times = classify.ZeroShotClassifier.__init__, {0: [], 3: []}
    try:
        for _ in range(5):
            for rounds in times:
                classify.ZeroShotClassifier.__init__ = functools.partialmethod(orig, balance_rounds=rounds)
                t = time.perf_counter()
                col._new_classifier(labels, classify.DEFAULT_TEMPLATES)
                times[rounds].append(time.perf_counter() - t)
    finally:
        classify.ZeroShotClassifier.__init__ = orig
    t = time.perf_counter()
    col.classifier(labels)
    kept = time.perf_counter() - t
    plain, balanced = np.median(times[0]), np.median(times[3])
    print(f"{col.corpus_sample().count} items ({len(col.corpus_sample().vectors)} in the sample): a new classifier "
          f"{plain * 1000:.0f} ms with the plain mean, {balanced * 1000:.0f} ms with 3 rounds (ratio "
          f"{balanced / plain:.2f}); a repeated request's classifier {kept * 1000:.2f} ms")


if __name__ == "__main__":
    main()
