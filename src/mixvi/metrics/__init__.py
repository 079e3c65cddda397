"""Clustering metrics. NMI and ARI come from scikit-learn; accuracy needs a matching."""

from ._clustering import clustering_accuracy, clustering_scores

__all__ = ["clustering_accuracy", "clustering_scores"]
