"""Clustering accuracy with Hungarian matching, and the usual trio of scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def clustering_accuracy(labels: Sequence | np.ndarray, predicted: Sequence | np.ndarray) -> float:
    """Accuracy of a clustering under the best one-to-one matching of clusters to labels.

    The matching maximises the number of agreeing observations (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). Any number of clusters is allowed:
    with more clusters than classes, unmatched clusters count as errors.

    Parameters
    ----------
    labels
        Reference classes, any hashable values.
    predicted
        Cluster assignments, any hashable values.

    Returns
    -------
    Fraction of observations in a matched (cluster, class) pair, in [0, 1].

    Examples
    --------
    >>> clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    if labels.shape != predicted.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and predicted must be 1-D of equal length; got {labels.shape} and {predicted.shape}."
        )
    if labels.size == 0:
        raise ValueError("labels is empty.")
    table = pd.crosstab(predicted, labels).to_numpy()
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels.size)


def clustering_scores(
    labels: Sequence | np.ndarray, predicted: Sequence | np.ndarray
) -> dict[str, float]:
    """ACC (Hungarian), NMI and ARI of ``predicted`` against ``labels``.

    Parameters
    ----------
    labels
        Reference labels (used only to score).
    predicted
        Predicted cluster of each observation.

    Returns
    -------
    ``{"acc": ..., "nmi": ..., "ari": ...}``.
    """
    labels = np.asarray(labels).astype(str)
    predicted = np.asarray(predicted).astype(str)
    return {
        "acc": clustering_accuracy(labels, predicted),
        "nmi": float(normalized_mutual_info_score(labels, predicted)),
        "ari": float(adjusted_rand_score(labels, predicted)),
    }
