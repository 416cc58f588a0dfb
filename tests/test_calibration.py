"""Calibration: standardised signals, their weighted sum, a fitted temperature, ECE and abstention."""

import numpy as np
import pytest

from retrieval.core.calibration import (
    LabelTemperature,
    abstention_curve,
    expected_calibration_error,
    fit_label_temperature,
    fit_temperature,
    fuse,
    softmax_rows,
    standardise_rows,
)


def sampled(temperature, n=4000, labels=8, seed=0):
    """Scores and labels drawn from softmax(scores / temperature): a task calibrated at that temperature."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, labels)) * 2.0
    prob = softmax_rows(scores, temperature)
    truth = np.array([rng.choice(labels, p=p) for p in prob])
    return scores, truth


def test_standardised_rows_have_zero_mean_and_unit_spread_and_keep_their_order():
    x = np.random.default_rng(1).normal(size=(5, 7)) * 0.01 + 3.0
    z = standardise_rows(x)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-12)
    assert (np.argsort(z, 1) == np.argsort(x, 1)).all()
    assert (standardise_rows(np.ones((2, 3))) == 0).all()  # a flat row says nothing


def test_fuse_weighs_standardised_signals_and_leaves_out_weight_zero():
    a, b = np.array([[0.0, 1.0, 2.0]]), np.array([[30.0, 10.0, 20.0]])
    np.testing.assert_allclose(fuse({"a": a, "b": b}, {"a": 1.0, "b": 0.0}), standardise_rows(a))
    np.testing.assert_allclose(fuse({"a": a, "b": b}, {"a": 1.0, "b": 2.0}), standardise_rows(a) + 2 * standardise_rows(b))
    with pytest.raises(ValueError, match="non-zero weight"):
        fuse({"a": a}, {"b": 1.0})


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(true_t):
    scores, truth = sampled(true_t)
    for objective in ("likelihood", "worst-ece"):
        got = fit_temperature([scores], [truth], objective=objective)
        assert abs(np.log(got / true_t)) < np.log(1.3), (objective, got)
    prob = softmax_rows(scores, fit_temperature([scores], [truth]))
    top = prob.argmax(1)
    assert expected_calibration_error(prob[np.arange(len(top)), top], (top == truth).astype(float)) < 0.03
    # at a temperature ten times too low, the same answers are overconfident
    wrong = softmax_rows(scores, true_t / 10)
    assert expected_calibration_error(wrong[np.arange(len(top)), top], (top == truth).astype(float)) > 0.1


def test_a_temperature_that_follows_the_number_of_labels_is_found_where_each_task_was_drawn_at_its_own():
    # tasks of 4 and 40 labels drawn at 2.0 x (L/10)^-0.5: 3.16 and 1.0; no one temperature fits both
    rule = LabelTemperature(2.0, -0.5)
    tasks = [sampled(rule(labels), n=3000, labels=labels, seed=labels) for labels in (4, 40)]
    scores, truths = [s for s, _ in tasks], [t for _, t in tasks]
    grid, powers = np.geomspace(0.5, 8.0, 41), np.linspace(-1.0, 0.5, 31)  # coarser than the defaults: quicker
    got = fit_label_temperature(scores, truths, grid, powers, objective="likelihood")
    assert abs(got.power - rule.power) <= 0.15 and abs(np.log(got.scale / rule.scale)) < np.log(1.3), got
    one = fit_label_temperature(scores, truths, grid, (0.0,), objective="worst-ece")
    assert one.power == 0.0 and one.scale == fit_temperature(scores, truths, grid, objective="worst-ece")

    def worst(r):
        eces = []
        for s, t in tasks:
            prob = softmax_rows(s, r(s.shape[1]))
            top = prob.argmax(1)
            eces.append(expected_calibration_error(prob[np.arange(len(top)), top], (top == t).astype(float)))
        return max(eces)
    assert worst(fit_label_temperature(scores, truths, grid, powers, objective="worst-ece")) < worst(one) - 0.02


def test_label_temperature_reads_numbers_and_specs_and_refuses_nonsense():
    assert LabelTemperature.of(1.5)(3) == LabelTemperature.of(1.5)(300) == 1.5
    rule = LabelTemperature(1.2, -0.25)
    assert LabelTemperature.of(rule.to_spec()) == rule and LabelTemperature.of(rule) is rule
    assert rule(10) == pytest.approx(1.2) and rule(160) == pytest.approx(0.6)
    for bad in (0.0, -1.0, "warm", float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            LabelTemperature.of(bad)
    with pytest.raises(ValueError, match="at least one label"):
        rule(0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="temperature > 0"):
        softmax_rows(np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="objective"):
        fit_temperature([np.zeros((1, 2))], [np.zeros(1, int)], objective="accuracy")
    with pytest.raises(ValueError, match="as many truth arrays"):
        fit_temperature([np.zeros((1, 2))], [])
    with pytest.raises(ValueError, match="confidence and correctness"):
        expected_calibration_error(np.zeros(2), np.zeros(3))


def test_abstention_trades_coverage_for_accuracy():
    scores, truth = sampled(1.0, n=2000)
    prob = softmax_rows(scores, 1.0)
    top = prob.argmax(1)
    curve = abstention_curve(prob[np.arange(len(top)), top], (top == truth).astype(float), [0.0, 0.4, 0.6, 0.8])
    cov = [c["coverage"] for c in curve]
    acc = [c["accuracy"] for c in curve]
    assert cov[0] == 1.0 and cov == sorted(cov, reverse=True) and acc == sorted(acc)
    assert acc[-1] > acc[0] + 0.2


def test_the_ece_of_a_calibrated_classifier_on_few_inputs_is_its_floor():
    from retrieval.core.calibration import calibrated_ece

    rng = np.random.default_rng(5)
    conf = rng.uniform(0.2, 0.9, 150)
    floors = [calibrated_ece(conf[:n]) for n in (30, 150)]
    assert floors[0] > floors[1] > 0.03  # biased upwards, the more so on fewer inputs
    assert calibrated_ece(rng.uniform(0.2, 0.9, 20000)) < 0.015
    honest = [expected_calibration_error(conf, (rng.random(150) < conf).astype(float)) for _ in range(200)]
    assert abs(np.median(honest) - floors[1]) < 0.01  # a calibrated classifier measures at its floor
    overconfident = (rng.random(150) < conf - 0.2).astype(float)
    assert expected_calibration_error(conf, overconfident) > floors[1] + 0.1
    assert calibrated_ece(conf, seed=1) == calibrated_ece(conf, seed=1)
    with pytest.raises(ValueError, match="at least one draw"):
        calibrated_ece(conf, draws=0)
    with pytest.raises(ValueError, match="non-empty"):
        calibrated_ece(np.zeros(0))
