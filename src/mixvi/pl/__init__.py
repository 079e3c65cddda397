"""Plots: image grids, reconstructions, generated samples and cluster members."""

from ._images import cluster_examples, images, reconstructions, samples

__all__ = ["cluster_examples", "images", "reconstructions", "samples"]
