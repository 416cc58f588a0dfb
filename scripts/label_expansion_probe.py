"""Label expansion by WordNet hyponyms, a probe (issue 33): does adding the words WordNet places below
a label to its prompts lift ASIF classification?

Each label's prompt embedding is mixed with the mean embedding of its hyponyms' first lemmas (the same
templates), breadth first to a depth, at most ``limit`` words, weight ``beta``; ASIF top-1 on the
validation tasks of scripts/classify_signals.py (emoji groups and subgroups folds, MNIST's first half,
the categories' validation halves). Not made an option: results/experiments/label_expansion.md.

    .venv/bin/python scripts/label_expansion_probe.py > results/experiments/label_expansion.md
"""

import collections

import numpy as np

from retrieval.core.metrics import query_recall
from retrieval.core.normalise import l2_normalise
from retrieval.encoders import load_encoder
from retrieval.encoders.wordnet import label_synsets, load_wordnet
from retrieval.evaluation.classification import TaskSignals
from retrieval.evaluation.suites.categories import SOURCES, category_tasks, emoji_anchors
from retrieval.evaluation.suites.digits import mnist_tasks
from retrieval.evaluation.suites.emoji_groups import class_tasks

GRID = ((0.0, 1, 1), (0.5, 2, 30), (1.0, 2, 30), (2.0, 2, 30), (1.0, 3, 100), (1.0, 1, 30))


class Ctx:
    def __init__(self):
        self.image = load_encoder("efficientnet-lite0-multi", "image")
        self.text, self.show_progress_bar = load_encoder("minilm", "text"), False


def lemmas(wn):
    """Each noun synset's words, and its hyponyms (the parents turned round)."""
    words, children = {}, collections.defaultdict(list)
    with open(wn.folder / "data.noun", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith(" "):
                fields = line.split(" | ", 1)[0].split()
                words[fields[0]] = [fields[4 + 2 * i].replace("_", " ").lower() for i in range(int(fields[3], 16))]
    for child, parents in wn.parents.items():
        for p in parents:
            children[p].append(child)
    return words, children


def hyponyms(wn, words, children, label, depth, limit):
    start = label_synsets(wn, label)
    seen, frontier, out = set(start), list(start), []
    for _ in range(depth):
        nxt = [c for s in frontier for c in children[s] if c not in seen]
        seen.update(nxt)
        out += [words[c][0] for c in nxt]
        frontier = nxt
    return out[:limit]


def top1(ctx, task, expand, beta):
    clf = TaskSignals(task, ctx.text, None).clf
    base = ctx.text.encode([t.format(lab) for lab in task.labels for t in task.templates])
    base = l2_normalise(base.reshape(len(task.labels), len(task.templates), -1).mean(1))
    extra = np.zeros_like(base)
    for i, lab in enumerate(task.labels):
        if expand(lab):
            v = ctx.text.encode([t.format(w) for w in expand(lab) for t in task.templates]).mean(0)
            extra[i] = v / np.linalg.norm(v)
    text_proj = task.text.fit(task.text.edited(keep_whitening=False, use_background=True))
    s = clf.image_proj.transform_rows(task.inputs) @ text_proj.transform(l2_normalise(base + beta * extra)).T
    return query_recall(np.asarray(s.toarray() if hasattr(s, "toarray") else s), task.truth, 1).mean()


def main():
    ctx, wn = Ctx(), load_wordnet()
    words, children = lemmas(wn)
    tasks = {level: folds for level, (folds, _) in class_tasks(ctx).items()}
    tasks["MNIST"] = [mnist_tasks(ctx)[0]]
    anchors = emoji_anchors(ctx)
    for source in SOURCES:
        tasks[source] = [category_tasks(source, ctx, anchors)[0]]
    print("# Label expansion by WordNet hyponyms (a probe)\n\n`.venv/bin/python scripts/label_expansion_probe.py`: "
          "ASIF top-1 on the validation tasks of scripts/classify_signals.py.\n")
    print("Hyponyms, depth 2, first 15:", {lab: hyponyms(wn, words, children, lab, 2, 15)
                                          for lab in tasks["tuxpaint"][0].labels[:4]}, "\n")
    print("| beta | depth | limit | " + " | ".join(tasks) + " | mean |\n|---|---|---|" + "---|" * (len(tasks) + 1))
    for beta, depth, limit in GRID:
        res = {name: float(np.mean([top1(ctx, t, lambda lab: hyponyms(wn, words, children, lab, depth, limit), beta)
                                    for t in ts])) for name, ts in tasks.items()}
        print(f"| {beta:g} | {depth} | {limit} | " + " | ".join(f"{v:.3f}" for v in res.values())
              + f" | {np.mean(list(res.values())):.3f} |", flush=True)


if __name__ == "__main__":
    main()
