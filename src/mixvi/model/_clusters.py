"""What a fitted Gaussian mixture gives back: clusters, their probabilities, new samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData


class MixtureResultsMixin:
    """Cluster results of a model whose module has a :class:`~mixvi.module.MixturePrior`.

    For :class:`~mixvi.model.GMVAE`; it relies on the model's ``_map_minibatches`` and
    ``_generate``.
    """

    @torch.inference_mode()
    def get_cluster_probabilities(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """q(c|x) = p(c|z) at the posterior mean of z; shape ``(n_obs, K)``, rows sum to 1.

        Parameters
        ----------
        adata
            AnnData with the training data's features (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        return self._map_minibatches(
            lambda _, out: self.module.responsibilities(out["qz"].loc), adata, indices, batch_size
        )

    def get_cluster_assignments(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The most probable component of each observation.

        Parameters
        ----------
        adata
            AnnData with the training data's features (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        return self.get_cluster_probabilities(adata, indices, batch_size).argmax(axis=1)

    @property
    def component_weights(self) -> np.ndarray:
        """π, the mixture weights."""
        return self.module.prior.log_weights().exp().detach().cpu().numpy()

    def collapsed_components(self, threshold: float = 0.01) -> list[int]:
        """Components whose weight π_k fell below ``threshold``: a sign that K is too large.

        Parameters
        ----------
        threshold
            Weight below which a component counts as collapsed.
        """
        return [int(k) for k in np.flatnonzero(self.component_weights < threshold)]

    def write_results(
        self,
        adata: AnnData | None = None,
        batch_size: int | None = None,
        key_added: str = "gmvae",
    ) -> AnnData:
        """Write the latent, clusters and cluster probabilities into ``adata``.

        Parameters
        ----------
        adata
            AnnData to write into (default: the training AnnData).
        batch_size
            Minibatch size (default: 1024).
        key_added
            Fills ``obsm[f"X_{key_added}"]`` (posterior means), ``obs[f"{key_added}_cluster"]``
            (categorical, one category per component) and
            ``obsm[f"{key_added}_probabilities"]`` (q(c|x)).

        Returns
        -------
        The AnnData written to.
        """
        target = self.adata if adata is None else adata
        with torch.inference_mode():  # one encoder pass gives both the latent and q(c|x)
            latent, probs = self._map_minibatches(
                lambda _, out: (out["qz"].loc, self.module.responsibilities(out["qz"].loc)),
                target,
                None,
                batch_size,
            )
        target.obsm[f"X_{key_added}"] = latent
        target.obsm[f"{key_added}_probabilities"] = probs
        target.obs[f"{key_added}_cluster"] = pd.Categorical(
            probs.argmax(axis=1).astype(str), categories=[str(k) for k in range(probs.shape[1])]
        )
        return target

    def _sample_prior(
        self, n: int, generator: torch.Generator, component: int | None = None
    ) -> torch.Tensor:
        return self.module.prior.sample(n, generator, component).to(self.device)

    @torch.inference_mode()
    def generate(
        self,
        n: int,
        component: int | None = None,
        condition: str | None = None,
        covariates: Mapping[str, str] | None = None,
        library_size: float | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> np.ndarray:
        """Sample z from one mixture component (or from the whole mixture) and decode it.

        Parameters
        ----------
        n
            Number of observations.
        component
            Mixture component k; ``None`` samples components by their weights.
        condition, covariates, library_size, sample, seed
            As in :meth:`mixvi.model.VAE.generate`.
        """
        return self._generate(
            n, condition, covariates, library_size, sample, seed, component=component
        )
