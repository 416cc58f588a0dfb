"""Experiment: centre the gallery images on their own (unlabelled) mean instead of the anchors' mean.

Each art style has its own mean embedding; the corpus is known at build time, so its mean can be
removed without labels. Run after `retrieval eval --suite emoji-xstyle` (reuses its cached data):
    .venv/bin/python scripts/corpus_centring_experiment.py
Output: results/experiments/corpus_centring.md."""
import numpy as np

from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.relative import asif_topk
from retrieval.encoders import load_encoder
from retrieval.evaluation.data import load_emoji
from retrieval.evaluation.harness import TEMPLATES, EmojiTask, emoji_splits

d = load_emoji(load_encoder("efficientnet-lite0","image"), load_encoder("minilm","text"), list(TEMPLATES))
s = emoji_splits(d.names)
def n(x): return x/np.linalg.norm(x,axis=1,keepdims=True)
def prep(x, mu): return n(n(x)-mu)
def asif_own(aq, ag, q, g, k, p, own_g=True):
    mq, mg = n(aq).mean(0), n(ag).mean(0)
    mg_items = n(g).mean(0) if own_g else mg   # gallery centred on its own (unlabelled) mean
    A_q, A_g = prep(aq, mq), prep(ag, mg)
    sq, sg = prep(q, mq) @ A_q.T, prep(g, mg_items) @ A_g.T
    prim = (asif_topk(sq, k, p) @ asif_topk(sg, k, p).T).toarray()
    dq, dg = n(sq), n(sg)
    return lexicographic(prim, dq @ dg.T)
def ev(task, **kw):
    m = retrieval_metrics(asif_own(task.aq, task.ag, task.q, task.g, **kw), np.arange(len(task.q)))
    return m["R@1"], m["R@10"]
print("| gallery centred on | k | p | val unseen R@1 | val unseen R@10 | val seen R@1 | val seen R@10 | test unseen R@1 | test unseen R@10 | test seen R@1 | test seen R@10 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for own in (False, True):
    for k, p in ((256, 4.0), (128, 2.0), (64, 4.0)):
        vu = np.mean([ev(EmojiTask(d, a, q), k=min(k, len(a)), p=p, own_g=own) for a, q in s["folds"]], axis=0)
        vs = np.mean([ev(EmojiTask(d, s["anchor"], q), k=k, p=p, own_g=own) for a, q in s["folds"]], axis=0)
        tu = ev(EmojiTask(d, s["anchor"], s["query"]), k=k, p=p, own_g=own)
        ts = ev(EmojiTask(d, s["all"], s["query"]), k=k, p=p, own_g=own)
        cells = [*vu, *vs, *tu, *ts]
        print(f"| {'its own mean' if own else 'the anchors mean'} | {k} | {p:g} | " + " | ".join(f"{c:.3f}" for c in cells) + " |",
              flush=True)
