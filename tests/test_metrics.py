"""Classification and regression metrics against scikit-learn; the confusion-matrix figure."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread
from sklearn import metrics as skm

from nnjax import metrics, plots

N = 24  # one sample size keeps the number of jit compilations small

jit_prf = jax.jit(metrics.precision_recall_f1, static_argnames=("num_classes", "average", "pos_label"))
jit_cm = jax.jit(metrics.confusion_matrix, static_argnames="num_classes")


@st.composite
def labelled(draw, min_classes=1, max_classes=5):
    """(labels, predictions, K): often with classes absent from labels, predictions or both."""
    k = draw(st.integers(min_classes, max_classes))
    seen = draw(st.integers(1, k))  # ids >= seen never occur in the labels
    labels = draw(st.lists(st.integers(0, seen - 1), min_size=N, max_size=N))
    predictions = draw(st.lists(st.integers(0, k - 1), min_size=N, max_size=N))
    return np.array(labels, np.int32), np.array(predictions, np.int32), k


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(deadline=None, max_examples=25)
@given(labelled())
def test_confusion_matrix_matches_sklearn(case):
    labels, predictions, k = case
    expected = skm.confusion_matrix(labels, predictions, labels=list(range(k)))
    np.testing.assert_array_equal(jit_cm(labels, predictions, num_classes=k), expected)
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, predictions, k), expected)


@settings(deadline=None, max_examples=25)
@given(labelled(min_classes=2))
def test_precision_recall_f1_match_sklearn_for_every_average(case):
    labels, predictions, k = case
    for average in ("macro", "micro", "weighted", None):
        got = jit_prf(labels, predictions, num_classes=k, average=average)
        want = skm.precision_recall_fscore_support(
            labels, predictions, labels=list(range(k)), average=average, zero_division=0
        )[:3]
        np.testing.assert_allclose(np.array(got), np.array(want, dtype=np.float64), atol=1e-6, err_msg=str(average))


@settings(deadline=None, max_examples=25)
@given(labelled(min_classes=2, max_classes=2), st.sampled_from([0, 1]))
def test_binary_average_matches_sklearn(case, pos_label):
    labels, predictions, _ = case
    got = jit_prf(labels, predictions, num_classes=2, average="binary", pos_label=pos_label)
    want = skm.precision_recall_fscore_support(
        labels, predictions, labels=[0, 1], average="binary", pos_label=pos_label, zero_division=0
    )[:3]
    np.testing.assert_allclose(np.array(got), np.array(want, dtype=np.float64), atol=1e-6)


def test_absent_and_never_predicted_classes_score_zero():
    labels = np.array([0, 0, 1, 1, 3])
    predictions = np.array([0, 1, 1, 1, 0])  # class 2 absent everywhere, class 3 never predicted
    precision, recall, f1 = metrics.precision_recall_f1(labels, predictions, 4, average=None)
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3, 0, 0], atol=1e-6)
    np.testing.assert_allclose(recall, [1 / 2, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(f1, [1 / 2, 4 / 5, 0, 0], atol=1e-6)
    macro = metrics.precision_recall_f1(labels, predictions, 4, average="macro")
    np.testing.assert_allclose(macro, [(1 / 2 + 2 / 3) / 4, 3 / 8, (1 / 2 + 4 / 5) / 4], atol=1e-6)


@settings(deadline=None, max_examples=8)
@given(labelled(min_classes=2), st.sampled_from(["macro", "micro", "weighted"]))
def test_classification_report_matches_sklearn(case, average):
    labels, predictions, k = case
    report = metrics.classification_report(labels, predictions, k, average=average)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, predictions, labels=list(range(k)), average=average, zero_division=0
    )
    assert set(report) == {"accuracy", "precision", "recall", "f1", "support"}
    assert all(isinstance(v, float) for v in report.values())
    np.testing.assert_allclose(
        [report["accuracy"], report["precision"], report["recall"], report["f1"], report["support"]],
        [skm.accuracy_score(labels, predictions), precision, recall, f1, N],
        atol=1e-6,
    )


def test_binary_report_from_probabilities_thresholds_strictly():
    labels = np.array([1, 0, 1, 1, 0, 0, 1])
    probabilities = np.array([0.9, 0.5, 0.5, 0.7, 0.2, 0.8, 0.1])
    predicted = (probabilities > 0.5).astype(int)
    report = metrics.binary_classification_report(labels, probabilities)
    (tn, fp), (fn, tp) = skm.confusion_matrix(labels, predicted)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(labels, predicted, average="binary")
    assert report == pytest.approx(
        {"accuracy": skm.accuracy_score(labels, predicted), "precision": precision, "recall": recall, "f1": f1,
         "support": 7.0, "tn": tn, "fp": fp, "fn": fn, "tp": tp}
    )
    np.testing.assert_array_equal(metrics.threshold_predictions(probabilities, 0.1), probabilities > 0.1)


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    predictions, targets = rng.normal(size=(2, 6, 3))
    np.testing.assert_allclose(metrics.mse(predictions, targets), skm.mean_squared_error(targets, predictions), rtol=1e-5)
    np.testing.assert_allclose(
        metrics.rmse(predictions, targets), np.sqrt(skm.mean_squared_error(targets, predictions)), rtol=1e-5
    )
    np.testing.assert_allclose(metrics.mae(predictions, targets), skm.mean_absolute_error(targets, predictions), rtol=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.precision_recall_f1([0, 1], [0, 1], 2, average="mean"), "average"),
        (lambda: metrics.precision_recall_f1([0, 2], [0, 1], 3, average="binary"), "num_classes=2"),
        (lambda: metrics.confusion_matrix([0, 1], [0], 2), "equal length"),
        (lambda: metrics.confusion_matrix([0, 1], [0, 1], 0), "num_classes"),
        (lambda: metrics.classification_report([0, 1], [0, 1], 2, average=None), "average"),
        (lambda: metrics.mse([1.0, 2.0], [1.0]), "equal shapes"),
    ],
)
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_confusion_matrix_figure_annotates_every_cell(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    fig = plots.confusion_matrix_figure(cm, class_names=["a", "b", "c"])
    assert [t.get_text() for t in fig.axes[0].texts] == [str(v) for v in cm.ravel()]
    normalized = plots.confusion_matrix_figure(cm, normalize=True)
    assert [t.get_text() for t in normalized.axes[0].texts] == ["0.83", "0.17", "0.00", "0.40", "0.60"] + ["0.00"] * 4
    path = plots.confusion_matrix(cm, str(tmp_path / "cm.png"), class_names=["a", "b", "c"], normalize=True)
    assert imread(path).ndim == 3
    with pytest.raises(ValueError, match="class_names"):
        plots.confusion_matrix_figure(cm, class_names=["a"])
