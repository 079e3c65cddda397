import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mixvi.metrics import clustering_accuracy, clustering_scores


def test_accuracy_is_invariant_to_cluster_names():
    labels = ["a", "a", "b", "b", "c", "c"]
    assert clustering_accuracy(labels, [2, 2, 0, 0, 1, 1]) == 1.0
    assert clustering_accuracy(labels, [0, 0, 0, 0, 1, 1]) == pytest.approx(4 / 6)


def test_accuracy_with_more_or_fewer_clusters_than_classes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert clustering_accuracy(labels, [0, 1, 2, 3, 4, 5]) == pytest.approx(2 / 6)
    assert clustering_accuracy(labels, [0, 0, 0, 0, 0, 0]) == pytest.approx(3 / 6)


def test_accuracy_matches_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    predicted = rng.integers(0, 4, 200)
    brute = max(np.mean(np.array(p)[predicted] == labels) for p in permutations(range(4)))
    assert clustering_accuracy(labels, predicted) == pytest.approx(brute)


def test_scores_use_sklearn():
    labels = [0, 0, 1, 1, 2, 2]
    predicted = [0, 0, 1, 2, 2, 2]
    scores = clustering_scores(labels, predicted)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, predicted))
    assert set(scores) == {"acc", "nmi", "ari"}


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        clustering_accuracy([0, 1], [0])
