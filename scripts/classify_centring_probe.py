"""Why Scratch's categories are classified below plain ASIF, a probe (issue 33).

On the validation and test tasks of scripts/classify_signals.py: ASIF top-1 with the inputs centred on
a blend of the corpus's mean and the anchors' (alpha 1: the default, the corpus; 0: the anchors'),
the distance between the two means against the corpus's spread (a label-free statistic that might
tell when to centre on the corpus), and the default with plain ASIF (k=64 p=8, raw) fused in as a
third signal at a few weights; then the corpus's mean with its predicted labels weighing alike
(core.centre.label_balanced_mean, the classifier's centring since: 1 or 3 rounds, from the corpus's
or the anchors' mean) beside plain ASIF. Figures in results/experiments/classify_centring.md.

    .venv/bin/python scripts/classify_centring_probe.py > results/experiments/classify_centring.md
"""

import numpy as np

from retrieval.api.classify import ZeroShotClassifier, label_scores
from retrieval.api.head_signals import ClassHead
from retrieval.core.calibration import fuse
from retrieval.core.centre import label_balanced_mean
from retrieval.core.metrics import query_recall
from retrieval.core.normalise import l2_normalise
from retrieval.encoders import load_encoder
from retrieval.evaluation.classification import TaskSignals, baseline_signals
from retrieval.evaluation.suites.categories import SOURCES, category_tasks, emoji_anchors
from retrieval.evaluation.suites.digits import mnist_tasks
from retrieval.evaluation.suites.emoji_groups import class_tasks

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
BALANCED = ("plain ASIF", "corpus", "anchors", "1 round from the corpus", "3 rounds from the corpus",
            "1 round from the anchors", "3 rounds from the anchors", "halfway: 3 rounds from the anchors and the corpus")
PLAIN = (0.0, 0.25, 0.5, 0.75, 1.0)


class Ctx:
    def __init__(self):
        self.image = load_encoder("efficientnet-lite0-multi", "image")
        self.text, self.show_progress_bar = load_encoder("minilm", "text"), False


def blended_top1(ctx, task, alpha):
    clf = ZeroShotClassifier(task.labels, task.templates, text_encoder=ctx.text, image=task.image, text=task.text)
    proj = clf.image_proj
    mean = alpha * proj.input_mean(task.corpus) + (1 - alpha) * proj.input_mean(task.image.anchors)
    s = proj.centred_on(mean).transform_rows(task.inputs) @ clf.class_rel.T
    return query_recall(np.asarray(s.toarray() if hasattr(s, "toarray") else s), task.truth, 1).mean()


def balanced_top1(ctx, task, how):
    """ASIF top-1 centred on the plain or label-balanced corpus mean (core.centre.label_balanced_mean)."""
    if how == "plain ASIF":
        return query_recall(baseline_signals(task, ctx.text).signals["asif"], task.truth, 1).mean()
    clf = ZeroShotClassifier(task.labels, task.templates, text_encoder=ctx.text, image=task.image, text=task.text)
    proj, corpus = clf.image_proj, task.corpus if task.corpus is not None else task.inputs
    means = {"corpus": proj.input_mean(corpus), "anchors": proj.input_mean(task.image.anchors)}
    def predict(m):  # the corpus in one batch, as the classifier balances it
        return np.asarray((proj.centred_on(m).transform(corpus) @ clf.class_rel.T).toarray()).argmax(1)

    def balanced(rounds, start):
        return label_balanced_mean(lambda rows: rows.mean(0, dtype=np.float64), predict, proj.at_centre(corpus),
                                   means[start], rounds)

    if how in means:
        mean = means[how]
    elif how.startswith("halfway"):  # the balanced and the plain corpus mean, half each
        mean = 0.5 * balanced(3, "anchors") + 0.5 * means["corpus"]
    else:
        mean = balanced(int(how[0]), how.split()[-1])
    return query_recall(label_scores(proj.centred_on(mean), task.inputs, clf.class_rel), task.truth, 1).mean()


def gap(task):
    corpus, anchors = l2_normalise(task.corpus.astype(np.float64)), l2_normalise(task.image.anchors.astype(np.float64))
    mc = corpus.mean(0)
    return np.linalg.norm(mc - anchors.mean(0)) / np.sqrt(((corpus - mc) ** 2).sum(1).mean())


_SIGNALS = {}


def plain_fused_top1(ctx, head, task, weight):
    if id(task) not in _SIGNALS:  # each task's signals once, whatever the weight
        _SIGNALS[id(task)] = dict(TaskSignals(task, ctx.text, head).signals,
                                  plain=baseline_signals(task, ctx.text).signals["asif"])
    sig = _SIGNALS[id(task)]
    used = {k: sig[k] for k in ("asif", "tree", "plain") if k in sig}
    return query_recall(fuse(used, {"asif": 1.0, "tree": 0.25, "plain": weight}), task.truth, 1).mean()


def table(title, tasks, column, values, fn):
    print(f"\n## {title}\n\n| split | {column} | " + " | ".join(tasks) + " | mean |\n|---|---|"
          + "---|" * (len(tasks) + 1))
    for split in (0, 1):
        for v in values:
            res = [float(np.mean([fn(t, v) for t in tasks[n][split]])) for n in tasks]
            print(f"| {('validation', 'test')[split]} | {v if isinstance(v, str) else format(v, 'g')} | " + " | ".join(f"{r:.3f}" for r in res)
                  + f" | {np.mean(res):.3f} |", flush=True)


def main():
    ctx = Ctx()
    head = ClassHead.of(ctx.image, ctx.text)
    tasks = {level: (folds, [test]) for level, (folds, test) in class_tasks(ctx).items()}
    v, t = mnist_tasks(ctx)
    tasks["MNIST"] = ([v], [t])
    anchors = emoji_anchors(ctx)
    for source in SOURCES:
        v, t = category_tasks(source, ctx, anchors)
        tasks[source] = ([v], [t])
    print("# Centring and Scratch's categories (a probe)\n\n`.venv/bin/python scripts/classify_centring_probe.py`")
    print("\nDistance between the corpus's and the anchors' means over the corpus's spread (validation): "
          + ", ".join(f"{n} {gap(ts[0][0]):.2f}" for n, ts in tasks.items()) + ".")
    table("ASIF top-1, inputs centred on alpha x corpus + (1 - alpha) x anchors", tasks, "alpha", ALPHAS,
          lambda task, a: blended_top1(ctx, task, a))
    table("ASIF top-1, inputs centred on the corpus's mean with its predicted labels weighing alike", tasks,
          "centred on", BALANCED, lambda task, how: balanced_top1(ctx, task, how))
    table("ASIF + tree 0.25 (the weights before 2026-12-07) with plain ASIF fused in", tasks, "plain weight", PLAIN,
          lambda task, w: plain_fused_top1(ctx, head, task, w))


if __name__ == "__main__":
    main()
