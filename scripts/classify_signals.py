"""Classification's signal weights and temperatures, chosen on validation folds in every labelled suite.

The classifier fuses the ASIF signal with the image network's head (the WordNet tree, the label
bridge: retrieval/api/head_signals.py) and with its corpus's neighbour votes (each input's nearest
corpus items' ASIF probabilities: retrieval/core/neighbour_votes.py), each standardised over the
labels, then makes the sum a probability at a temperature per set of signals
(retrieval/api/classify.py). Both are chosen here on validation data only:

* emoji groups and subgroups: the emoji suite's 4 validation folds of the *anchor* concepts (each
  fold's Twemoji drawings classified with the Noto anchors of the other three; corpus: every Twemoji
  drawing; bank: the picture sources' pairs), never the query concepts results/emoji-groups reports;
* MNIST: the first half (random, seed 0) of MNIST-5k with scikit-learn's digit anchors and the
  engine's emoji bank (corpus: all 5,000);
* Tux Paint, Scratch, Open Clip Art by category: the validation half of each (by a stable hash of
  the concept) with the emoji pack as anchors (results/categories reports the other half).

Weights: of the grid points where no validation task scores below ASIF alone (the project's rule:
a default never below the baseline anywhere), the one with the best mean validation top-1, and the
same among the points without votes (for inputs that come without a corpus); then, at those weights,
how many neighbours vote and at what temperature, shown beside the setting used. Temperatures: for
each set of signals, a scale and a power of the number of labels (core.calibration.LabelTemperature)
whose worst validation task has the lowest expected calibration error, over the tasks that have those
signals (the best mean log-likelihood is shown beside it, and one temperature for every task, power
0, as before). Then the held-out figures (emoji-groups' query concepts, MNIST's other half, the
categories' test halves) for the chosen point and for ASIF alone, and whether the rule carries to a
domain it was not fitted on: each suite's held-out ECE with the rule fitted on the other suites'
validation tasks alone.

    .venv/bin/python scripts/classify_signals.py --out results/experiments/classify_signals.md
"""

from __future__ import annotations

import itertools

import numpy as np

from retrieval.evaluation.benchlib import out_args, report

TREE = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
BRIDGE = (0.0, 0.1, 0.25, 0.5)
NEIGHBOURS = (0.0, 0.5, 1.0, 2.0, 3.0)
VOTERS = (5, 10, 20, 40)
VOTE_TEMPERATURES = (0.5, 1.0, 2.0)
KEYS = tuple(sorted(k + n) for k in (["asif"], ["asif", "tree"], ["asif", "bridge"], ["asif", "bridge", "tree"])
             for n in ([], ["neighbours"]))


class Ctx:
    def __init__(self, image, text):
        self.image, self.text, self.show_progress_bar = image, text, False


def main():
    from retrieval.api.classify import NEIGHBOUR_VOTES
    from retrieval.api.head_signals import ClassHead
    from retrieval.core.calibration import calibrated_ece, fit_label_temperature
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.classification import TaskSignals
    from retrieval.evaluation.suites.categories import SOURCES, category_tasks, emoji_anchors
    from retrieval.evaluation.suites.digits import mnist_tasks
    from retrieval.evaluation.suites.emoji_groups import class_tasks

    a, t0 = out_args(__doc__)
    ctx = Ctx(load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text"))
    head = ClassHead.of(ctx.image, ctx.text)
    val, test = {}, {}
    for level, (folds, held) in class_tasks(ctx).items():
        val[level], test[level] = folds, [held]
    v, t = mnist_tasks(ctx)
    val["MNIST"], test["MNIST"] = [v], [t]
    anchors = emoji_anchors(ctx)
    for source in SOURCES:
        v, t = category_tasks(source, ctx, anchors)
        val[source], test[source] = [v], [t]
    sig = {name: [TaskSignals(x, ctx.text, head) for x in tasks] for name, tasks in val.items()}

    def top1(signals, weights, only=None):
        return float(np.mean([s.measure(weights, {}, only)["top-1"] for s in signals]))

    grid = []
    for wn, wt, wb in itertools.product(NEIGHBOURS, TREE, BRIDGE):
        w = {"asif": 1.0, "tree": wt, "bridge": wb, "neighbours": wn}
        per = {name: top1(s, w) for name, s in sig.items()}
        grid.append((w, per, float(np.mean(list(per.values())))))
    alone = grid[0][1]  # every other weight 0: ASIF alone
    allowed = [g for g in grid if all(g[1][n] >= alone[n] for n in alone)]
    best_w, best_per, best_mean = max(allowed, key=lambda g: g[2])
    # inputs without a corpus have no votes: their weights are chosen among the points without them
    lone_w, _, lone_mean = max((g for g in allowed if not g[0]["neighbours"]), key=lambda g: g[2])
    votes = []  # the votes' own settings at the chosen weights: how many neighbours, at what temperature
    for m, temp in itertools.product(VOTERS, VOTE_TEMPERATURES):
        per = {name: top1([revoted(x, m, temp) for x in s], best_w) for name, s in sig.items()}
        votes.append((m, temp, per, float(np.mean(list(per.values())))))
    fits = {}

    def fit(tasks, key, **how):  # sets of signals whose weight is 0 fuse alike: each distinct one fitted once
        w = best_w if "neighbours" in key else lone_w
        used = tuple(tuple(s.used(w, key)) for s in tasks)
        memo = (tuple(id(s) for s in tasks), used, tuple(sorted(how.items())))
        if memo not in fits:
            fits[memo] = fit_label_temperature([s.fused(w, key) for s in tasks], [s.task.truth for s in tasks], **how)
        return fits[memo]

    temps, by_likelihood, one = {}, {}, {}
    for key in KEYS:
        tasks = [s for ss in sig.values() for s in ss if all(k in s.signals for k in key)]
        temps["+".join(key)] = fit(tasks, key, objective="worst-ece")
        by_likelihood["+".join(key)] = fit(tasks, key)
        one["+".join(key)] = fit(tasks, key, powers=(0.0,), objective="worst-ece")
    held = {name: [TaskSignals(x, ctx.text, head) for x in tasks] for name, tasks in test.items()}
    lines = ["# Classification's signals: weights and temperatures chosen on validation folds", "",
             f"`.venv/bin/python scripts/classify_signals.py --out results/experiments/classify_signals.md` "
             f"({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s). " + __doc__.split("\n\n")[1].replace("\n", " "),
             "", "## Validation top-1 over the grid (asif weight 1)", "",
             "| neighbours | tree | bridge | " + " | ".join(sig) + " | mean |", "|---|---|---|" + "---|" * (len(sig) + 1)]
    for w, per, mean in grid:
        mark = "**" if w == best_w else "" if (w, per, mean) in allowed else "~~"
        lines.append(f"| {w['neighbours']:g} | {w['tree']:g} | {w['bridge']:g} | " + " | ".join(f"{per[n]:.3f}" for n in sig)
                     + f" | {mark}{mean:.3f}{mark} |")
    lines += ["", "Struck through: below ASIF alone in some validation task.", "",
              f"The votes' settings (retrieval.api.classify.NEIGHBOUR_VOTES: {NEIGHBOUR_VOTES}) at the chosen "
              "weights, validation top-1:", "", "| neighbours voting | temperature | " + " | ".join(sig) + " | mean |",
              "|---|---|" + "---|" * (len(sig) + 1)]
    for m, temp, per, mean in votes:
        mark = "~~" if any(per[n] < alone[n] for n in alone) else ""
        lines.append(f"| {m} | {temp:g} | " + " | ".join(f"{per[n]:.3f}" for n in sig) + f" | {mark}{mean:.3f}{mark} |")
    lines += ["",
              f"Chosen: neighbours {best_w['neighbours']:g}, tree {best_w['tree']:g}, bridge {best_w['bridge']:g} "
              f"(mean validation top-1 {best_mean:.3f}). Without a corpus (no votes; "
              f"retrieval.api.classify.WEIGHTS_WITHOUT_VOTES): tree {lone_w['tree']:g}, bridge {lone_w['bridge']:g} "
              f"(mean validation top-1 {lone_mean:.3f}).",
              "Temperatures, scale x (labels / 10) ** power (the lowest worst-task validation ECE, as the goal "
              "is ECE <= 0.10 in every suite): " + _rules(temps) + "; by the best mean log-likelihood instead: "
              + _rules(by_likelihood) + "; one temperature for every task (power 0): " + _rules(one) + ".", "",
              "## Held out: the chosen point against ASIF alone", "",
              "| task | inputs | labels | ASIF alone top-1 | chosen top-1 | temperature | chosen mean confidence | "
              "chosen ECE | ECE if calibrated | ECE at one temperature | ECE, rule fitted without this suite | signals |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    out = {"grid": [{"weights": w, "validation": per, "mean": m} for w, per, m in grid], "weights": best_w,
           "weights without votes": lone_w,
           "temperatures": _specs(temps), "temperatures by likelihood": _specs(by_likelihood),
           "one temperature": _specs(one), "held out": {}}
    for name, ss in held.items():
        alone, chosen, flat = (ss[0].measure(best_w, temps, ["asif"]), ss[0].measure(best_w, temps),
                               ss[0].measure(best_w, one))
        used = "+".join(ss[0].used(best_w))
        others = [s for n, v in sig.items() if n != name for s in v]
        rule = fit(others, used.split("+"), objective="worst-ece")
        apart = ss[0].measure(best_w, {used: rule})
        n_l, floor = len(ss[0].task.labels), calibrated_ece(chosen["confidence"])
        lines.append(f"| {name} | {len(chosen['confidence'])} | {n_l} | {alone['top-1']:.3f} | {chosen['top-1']:.3f} | "
                     f"{temps[used](n_l):.3f} | {chosen['confidence'].mean():.3f} | {chosen['ece']:.3f} | {floor:.3f} | "
                     f"{flat['ece']:.3f} | "
                     f"{apart['ece']:.3f} ({_rules({used: rule})}) | {used} |")
        out["held out"][name] = {"asif top-1": alone["top-1"], "top-1": chosen["top-1"], "ece": chosen["ece"],
                                 "inputs": len(chosen["confidence"]), "ece if calibrated": floor,
                                 "ece at one temperature": flat["ece"], "ece, fitted without it": apart["ece"],
                                 "signals": used}
    worst = {k: max(v[k] for v in out["held out"].values()) for k in
             ("ece", "ece at one temperature", "ece, fitted without it")}
    lines += ["", "Worst held-out ECE: " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()) + ". \"ECE if "
              "calibrated\": the ECE a perfectly calibrated classifier would show with the same confidences on as "
              "many inputs (retrieval.core.calibration.calibrated_ece, median of 200 draws): ECE's upward bias on "
              "few inputs, the floor a measured ECE is read against."]
    report(lines, a.out, out)


def revoted(signals, m: int, temperature: float):
    """A task's signals with its corpus's votes made again by ``m`` neighbours at ``temperature``."""
    import copy

    from retrieval.api.classify import CorpusSample
    from retrieval.core.neighbour_votes import NeighbourVotes

    out, clf, task = copy.copy(signals), signals.clf, signals.task
    sample = CorpusSample.of(task.corpus).vectors
    votes = NeighbourVotes(m, temperature).fit(sample, clf.scores(sample))
    out.signals = {**signals.signals, "neighbours": votes.transform(task.inputs)}
    return out


def _rules(temps) -> str:
    return ", ".join(f"{k} {v.scale:.3g} x (L/10)^{v.power:+.3g}" for k, v in temps.items())


def _specs(temps):
    return {k: v.to_spec() for k, v in temps.items()}


if __name__ == "__main__":
    import time

    main()
