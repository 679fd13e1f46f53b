"""Benchmark metrics against scikit-learn on known inputs, labels without positives left out of the macro average,
and bootstrap intervals that bracket the estimate and repeat with the seed."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from eee_ray.metrics import auroc_per_label, evaluate, micro_auroc


@pytest.fixture
def multilabel():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < [0.5, 0.2, 0.05, 0.3, 0.1]).astype(np.uint8)
    score = np.round(y * 0.6 + rng.random(y.shape), 1)  # rounded: many ties, which AUROC must handle like sklearn
    return y, score


def test_auroc_matches_sklearn_with_ties(multilabel):
    y, s = multilabel
    np.testing.assert_allclose(auroc_per_label(y, s), [roc_auc_score(y[:, j], s[:, j]) for j in range(5)], atol=1e-12)
    assert micro_auroc(y, s) == pytest.approx(roc_auc_score(y, s, average="micro"), abs=1e-12)


def test_evaluate_matches_sklearn_macro_micro_auprc(multilabel):
    y, s = multilabel
    ev = evaluate(y, s, list("abcde"), n_boot=200)
    assert ev.macro_auroc == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert ev.micro_auroc == pytest.approx(roc_auc_score(y, s, average="micro"), abs=1e-12)
    assert ev.macro_auprc == pytest.approx(average_precision_score(y, s, average="macro"), abs=1e-12)
    assert ev.macro_auroc_ci_low < ev.macro_auroc < ev.macro_auroc_ci_high
    assert ev.n_labels == 5 and ev.n_records == 200
    again = evaluate(y, s, list("abcde"), n_boot=200)
    assert (again.macro_auroc_ci_low, again.macro_auroc_ci_high) == (ev.macro_auroc_ci_low, ev.macro_auroc_ci_high)


def test_known_small_case():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.4, 0.2], [0.5, 0.4]])
    ev = evaluate(y, s, ["has_pos", "no_pos"], n_boot=0)
    # label 1: positives 0.9, 0.4 vs negatives 0.2, 0.5 -> 3 of 4 pairs ranked right
    assert ev.macro_auroc == pytest.approx(0.75)
    assert ev.n_labels == 1  # the label without a positive is reported but not averaged
    row = ev.per_label.set_index("label").loc["no_pos"]
    assert not row["included"] and row["n_pos"] == 0 and np.isnan(row["auroc"])
    assert np.isnan(ev.macro_auroc_ci_low)  # no bootstrap asked for


def test_no_positive_at_all_gives_nan_not_a_crash():
    ev = evaluate(np.zeros((5, 2)), np.random.default_rng(0).random((5, 2)), ["a", "b"], n_boot=10)
    assert ev.n_labels == 0 and np.isnan(ev.macro_auroc) and np.isnan(ev.micro_auroc)
