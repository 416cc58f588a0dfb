"""The evaluation machinery. Quality itself is measured on real data by `retrieval eval` (results/);
these tests check that the harness measures what it says, on cases whose answer is known."""

import numpy as np
import pytest

from retrieval.cli.main import main
from retrieval.core.metrics import retrieval_metrics
from retrieval.evaluation import methods as M
from retrieval.evaluation.harness import EmojiTask, choose, emoji_splits
from retrieval.evaluation.report import Report


class Parallel:
    """Two 'modalities' that are noisy linear images of the same latent concepts."""

    def __init__(self, n=300, seed=0, noise=0.05):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, 16))
        self.names = np.array([f"concept {i}" for i in range(n)])
        self.texts = {"an emoji of {}": (z @ rng.normal(size=(16, 24)) + noise * rng.normal(size=(n, 24))).astype(np.float32)}
        w = rng.normal(size=(16, 40))
        self.images = {"noto": (z @ w + noise * rng.normal(size=(n, 40))).astype(np.float32),
                       "twemoji": (z @ w + noise * rng.normal(size=(n, 40))).astype(np.float32)}


def test_splits_are_disjoint_stable_and_cover_everything():
    names = [f"name {i}" for i in range(500)]
    s, again = emoji_splits(names), emoji_splits(names)
    assert not set(s["anchor"]) & set(s["query"])
    assert sorted(np.concatenate([s["anchor"], s["query"]]).tolist()) == list(range(500))
    held_out = np.concatenate([q for _, q in s["folds"]])
    assert sorted(held_out.tolist()) == sorted(s["anchor"].tolist())
    for (a, q), (a2, q2) in zip(s["folds"], again["folds"]):
        assert not set(a) & set(q) and a.tolist() == a2.tolist() and q.tolist() == q2.tolist()


@pytest.mark.parametrize("direction", ["t2i", "i2t"])
def test_every_method_retrieves_parallel_concepts_far_above_chance(direction):
    data = Parallel()
    s = emoji_splits(data.names)
    task = EmojiTask(data, s["anchor"], s["query"], direction=direction)
    chance = 10 / len(s["query"])
    for fn, kw in ((M.asif, dict(k=32, p=2.0, center=True)), (M.cosine_relative, {}), (M.translate, {}),
                   (M.translate, dict(method="affine")), (M.csls, dict(k=32, p=2.0))):
        assert task.evaluate(fn, **kw)["R@10"] > 5 * chance, fn.__name__


def test_choose_prefers_the_better_configuration_across_folds():
    data = Parallel(noise=0.3)
    s = emoji_splits(data.names)
    tasks = [EmojiTask(data, a, q) for a, q in s["folds"]]
    best, m = choose(tasks, center=True)
    scores = {k: np.mean([t.evaluate(M.asif, k=k, p=best["p"], center=True)["R@10"] for t in tasks])
              for k in (8, 16, 32, 64) if k <= min(len(t.aq) for t in tasks)}
    assert m["R@10"] == pytest.approx(scores[best["k"]]) and m["R@10"] >= max(scores.values()) - 1e-12


def test_fusion_ranks_and_anchor_selection():
    a = np.array([[3.0, 1.0, 2.0]])
    assert M.ranks(a).tolist() == [[0, 2, 1]]
    fused = M.rrf(a, np.array([[2.0, 3.0, 1.0]]))
    assert fused.argmax() == 0 and fused[0, 2] < fused[0, 1]  # ranks (1st, 2nd) > (3rd, 1st) > (2nd, 3rd)
    np.testing.assert_allclose(fused[0], [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62 + 1 / 63])
    x = np.random.default_rng(0).normal(size=(60, 5))
    for sel in (M.farthest_point, M.kmeans_select):
        picked = sel(x, 10, seed=0)
        assert len(set(picked.tolist())) == 10 and picked.max() < 60


def test_report_writes_markdown_and_plots(tmp_path):
    r = Report("suite", "Title", "retrieval eval --suite suite", {"image": "img", "text": "txt"})
    r.table("t", ["a", "b"], [["x", 0.12345]])
    r.plot("p.png", "curve", "x", "y", {"s": ([1, 2], [0.1, 0.2])}, hline=0.05)
    out = r.write(tmp_path)
    text = (out / "README.md").read_text()
    assert "`retrieval eval --suite suite`" in text and "| x | 0.123 |" in text and "![curve](p.png)" in text
    assert (out / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unknown_suite_lists_the_known_ones(capsys):
    assert main(["eval", "--suite", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'imagenet'" in err and "emoji-xstyle" in err and "digits" in err


def test_metrics_on_engine_order_have_no_spurious_ties():
    data = Parallel()
    s = emoji_splits(data.names)
    task = EmojiTask(data, s["anchor"], s["query"])
    primary = retrieval_metrics(M.asif(task.aq, task.ag, task.q, task.g, k=4, p=8.0, engine=False),
                                np.arange(len(task.q)))
    engine = retrieval_metrics(M.asif(task.aq, task.ag, task.q, task.g, k=4, p=8.0), np.arange(len(task.q)))
    assert engine["tied"] <= primary["tied"]


def test_product_of_invariances_retrieves_parallel_concepts():
    data = Parallel()
    s = emoji_splits(data.names)
    task = EmojiTask(data, s["anchor"], s["query"])
    poi = M.product_of_invariances(task.aq, task.ag, task.q, task.g, sims=("cosine",))
    assert retrieval_metrics(poi, np.arange(len(task.q)))["R@10"] > 0.5
    full = task.evaluate(M.product_of_invariances)
    assert full["R@10"] > 5 * 10 / len(task.q)
    assert task.evaluate(M.asif_product_of_invariances, k=16, p=2.0)["R@10"] > 5 * 10 / len(task.q)


def test_eval_and_demo_bad_arguments_exit_2(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = Report("suite", "T", "cmd", {})
    from retrieval.errors import InputError

    with pytest.raises(InputError, match="writable results folder"):
        r.write(blocker)
    assert main(["demo", "--limit", "0", "--out", str(tmp_path / "d"), "--data", str(tmp_path / "e")]) == 2
    assert "expected --limit >= 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_views_task_computes_what_a_styled_engine_projector_computes():
    """EmojiTask(views=...) pre-applies the style normaliser; the engine applies it inside
    RelativeProjector. Both must give the same scores, or the suite would not measure the engine."""
    from retrieval.core.projector import RelativeProjector
    from retrieval.core.style import StyleNormaliser, merge_views

    data = Parallel(noise=0.2)
    rng = np.random.default_rng(1)
    data.images["openmoji"] = data.images["noto"] + 3.0 * rng.normal(size=(1, 40)).astype(np.float32)
    s = emoji_splits(data.names)
    task = EmojiTask(data, s["anchor"], s["query"], views=("noto", "openmoji"))
    got = M.asif(task.aq, task.ag, task.q, task.g, k=16, p=3.0, center=True, engine=False)

    a = s["anchor"]  # the engine's own pieces, as a build uses them
    raw = np.vstack([data.images["noto"][a], data.images["openmoji"][a]])
    concepts = np.concatenate([a, a])
    norm = StyleNormaliser.fit(raw, concepts)
    _, proto, _ = merge_views(concepts, raw, np.vstack([data.texts["an emoji of {}"][a]] * 2))
    img = RelativeProjector(k=16, p=3.0, center=True, style=norm).fit(proto)
    txt = RelativeProjector(k=16, p=3.0, center=True).fit(data.texts["an emoji of {}"][a])
    q, g = data.texts["an emoji of {}"][s["query"]], data.images["twemoji"][s["query"]]
    primary = (txt.transform(q) @ img.transform(g).T).toarray()
    np.testing.assert_allclose(got, primary, atol=1e-5)  # the primary (sparse ASIF) scores
    # and the secondary (dense relative cosine) scores that break its ties
    tq = RelativeProjector(k=16, p=3.0, center=True).fit(task.aq)
    tg = RelativeProjector(k=16, p=3.0, center=True).fit(task.ag)
    np.testing.assert_allclose(tq.dense(task.q) @ tg.dense(task.g).T, txt.dense(q) @ img.dense(g).T, atol=1e-5)
    assert task.evaluate(M.asif, k=16, p=3.0, center=True)["R@10"] > 5 * 10 / len(s["query"])


def test_views_task_keeps_concepts_a_style_does_not_draw_as_a_build_does():
    """A style that draws only some anchor concepts adds views to those alone; the others keep the
    views they have (a build merges whatever rows an anchor table gives a concept)."""
    from retrieval.core.projector import RelativeProjector
    from retrieval.core.style import StyleNormaliser, merge_views

    data = Parallel(noise=0.2)
    rng = np.random.default_rng(2)
    data.images["openmoji"] = data.images["noto"] + 2.0 * rng.normal(size=(1, 40)).astype(np.float32)
    data.images["fluent"] = data.images["noto"] + 2.0 * rng.normal(size=(1, 40)).astype(np.float32)
    data.has = {"fluent": rng.random(len(data.names)) < 0.5}
    s = emoji_splits(data.names)
    task = EmojiTask(data, s["anchor"], s["query"], views=("noto", "openmoji", "fluent"))
    a = s["anchor"]
    assert task.n_anchors == len(a)  # nobody dropped for lacking a Fluent drawing
    rows = [(i, st) for i in a for st in ("noto", "openmoji", "fluent") if st != "fluent" or data.has["fluent"][i]]
    assert len(a) * 2 < len(rows) < len(a) * 3
    concepts = np.array([i for i, _ in rows])
    raw = np.vstack([data.images[st][i] for i, st in rows])
    norm = StyleNormaliser.fit(raw, concepts)
    _, proto, _ = merge_views(concepts, raw, data.texts["an emoji of {}"][concepts])
    img = RelativeProjector(k=16, p=3.0, center=True, style=norm).fit(proto)
    txt = RelativeProjector(k=16, p=3.0, center=True).fit(data.texts["an emoji of {}"][a])
    q, g = data.texts["an emoji of {}"][s["query"]], data.images["twemoji"][s["query"]]
    got = M.asif(task.aq, task.ag, task.q, task.g, k=16, p=3.0, center=True, engine=False)
    np.testing.assert_allclose(got, (txt.transform(q) @ img.transform(g).T).toarray(), atol=1e-5)


def test_tuxpaint_stamp_sounds_are_named_by_their_stamp_and_skip_spoken_files(tmp_path):
    from retrieval.datasets.sounds import _tuxpaint_sounds

    birds, letters = tmp_path / "animals" / "birds", tmp_path / "symbols" / "alphabets" / "latin"
    birds.mkdir(parents=True)
    letters.mkdir(parents=True)
    for name, text in (("heron", "A great blue heron.\nfr.utf8=Un heron"), ("owl_2", "fr.utf8=Un hibou")):
        (birds / f"{name}.txt").write_text(text, encoding="utf-8")
        (birds / f"{name}.ogg").write_bytes(b"OggS")
    for spoken in ("heron_fr.ogg", "heron_desc_fr.ogg", "lonely.ogg"):  # languages; no .txt beside it
        (birds / spoken).write_bytes(b"OggS")
    (letters / "a.txt").write_text("A.", encoding="utf-8")
    (letters / "a.ogg").write_bytes(b"OggS")
    found = _tuxpaint_sounds(tmp_path)
    assert [(s.name, s.words, s.source) for s in found] == [("heron", "a great blue heron", "tuxpaint"),
                                                            ("owl_2", "owl", "tuxpaint")]


def test_query_recall_is_the_per_query_form_of_recall_at_k():
    from retrieval.core.metrics import query_recall

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(30, 30)))  # rounded: many ties, counted fairly in both
    hits = query_recall(scores, np.arange(30), 5)
    assert hits.shape == (30,) and np.all((hits >= 0) & (hits <= 1)) and np.any((hits > 0) & (hits < 1))
    assert hits.mean() == pytest.approx(retrieval_metrics(scores, np.arange(30))["R@5"])


def test_paired_interval_is_wide_for_few_queries_and_covers_the_gain():
    from retrieval.core.metrics import paired_interval

    rng = np.random.default_rng(1)
    base = (rng.random(2000) < 0.4).astype(float)
    better = np.where(rng.random(2000) < 0.1, 1.0, base)  # about +0.06
    big = paired_interval(base, better)
    small = paired_interval(base[:100], better[:100])
    assert big["low"] < big["gain"] < big["high"] and big["low"] > 0
    assert small["high"] - small["low"] > 2 * (big["high"] - big["low"])  # 20x fewer queries: ~4.5x wider
    assert paired_interval(base, better) == big  # seeded: a rerun prints the same interval
    assert paired_interval(base, base) == {"gain": 0.0, "low": 0.0, "high": 0.0, "queries": 2000}
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_interval(base, better[:10])
    with pytest.raises(ValueError, match="at least one bootstrap resample"):
        paired_interval(base, better, resamples=0)


def test_a_suite_report_records_the_runtime_it_ran_on(tmp_path, monkeypatch):
    """The runtime moves figures a little (bfloat16 on OpenVINO), so a report names it and the
    command that reproduces it carries --runtime."""
    import types

    from retrieval.evaluation import suites
    from retrieval.evaluation.harness import Suite

    def fake(spec, modality):
        import os

        return types.SimpleNamespace(name=f"fake-{modality}", runtime=os.environ.get("RETRIEVAL_RUNTIME", "auto"))

    monkeypatch.setattr(suites, "load_encoder", fake)
    monkeypatch.setitem(suites.SUITES, "tiny", Suite("tiny", "a suite of one line", lambda report, ctx: {}))
    monkeypatch.setenv("RETRIEVAL_RUNTIME", "onnx")  # main() sets it from --runtime; restored after the test
    assert main(["eval", "--suite", "tiny", "--out", str(tmp_path), "--runtime", "torch", "--no-progress"]) == 0
    text = (tmp_path / "tiny" / "README.md").read_text()
    assert f"`retrieval eval --suite tiny --out {tmp_path} --runtime torch`" in text
    assert "Encoder runtimes: image torch, text torch" in text
