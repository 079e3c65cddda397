"""Choosing the number of mixture components K without labels.

The held-out ELBO barely moves with K, because the decoder makes up for a coarse prior, so
it cannot choose. What K should count are the groups of cells that lie apart in the latent
space of a VAE pretraining. Each candidate K gets one partition of the cells: a
full-covariance Gaussian mixture with K components on a 2-D UMAP of the posterior means
(as the GMVAE's ``init="umap"`` start clusters, and as N2D :cite:p:`McConville2021` does). The partition is scored
by its silhouette twice:

- in the UMAP, where curved clusters (digits written in several ways) become compact, so
  that a mixture does not need several components for one of them;
- in the latent itself, where UMAP's tears do not count: a cluster that UMAP cuts in two
  stays one there, and two clusters that UMAP glues are still apart.

Each silhouette is divided by its best over the candidates, and the chosen K has the best
worse view (the highest minimum of the two). A K wins only where both views agree that its
clusters are separated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixvi.module._prior import MixturePrior

from ._defaults import LATENT, LAYERS
from ._mixture_start import umap_embedding

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger("mixvi")


def check_candidates(candidates: Sequence[int], n_obs: int) -> list[int]:
    """The candidate K as a list of ints, or a ``ValueError`` saying what is wrong with them."""
    if isinstance(candidates, int | np.integer) or isinstance(candidates, str):
        raise ValueError(f"n_components must be a list of candidate K, got {candidates!r}.")
    ks = [int(k) for k in candidates]
    if not ks:
        raise ValueError("n_components is empty: give at least one candidate K.")
    if min(ks) < 1:
        raise ValueError(f"Every candidate K must be >= 1, got {sorted(k for k in ks if k < 1)}.")
    too_many = sorted(k for k in ks if k > n_obs)
    if too_many:
        raise ValueError(f"Candidate K {too_many} exceed the number of cells ({n_obs}).")
    duplicates = sorted({k for k in ks if ks.count(k) > 1})
    if duplicates:
        raise ValueError(f"Candidate K {duplicates} appear more than once.")
    return ks


def k_range_candidates(low: int, high: int, n_obs: int, given: str) -> list[int]:
    """The candidates ``low..high`` (the top capped at ``n_obs``), checked.

    ``given`` names the argument as the caller spells it, for the error.
    """
    low, high = int(low), int(high)
    if low < 1 or high < low:
        raise ValueError(f"{given}: needs 1 <= smallest <= largest.")
    return list(range(low, min(high, n_obs) + 1))


def chosen_k(table: pd.DataFrame) -> int:
    """The K that :func:`separation_scores`' table marks ``chosen``."""
    return int(table.index[table["chosen"]][0])


def worse_view(*silhouettes: np.ndarray) -> np.ndarray:
    """Per candidate, the smallest of its silhouettes, each divided by that view's best.

    A silhouette is NaN where it is undefined (K = 1, or a partition with one cluster), and
    so is the score. A view whose best silhouette is not positive has no separated
    clusters at all; it is divided by the absolute value of its best, which keeps the order
    of its candidates (the least bad stays highest).
    """
    views = []
    for s in silhouettes:
        s = np.asarray(s, dtype=float)
        best = np.nanmax(s) if np.isfinite(s).any() else np.nan
        views.append(s / abs(best) if best and np.isfinite(best) else s)
    return np.min(views, axis=0)


def separation_scores(
    mean: np.ndarray,
    candidates: Sequence[int],
    seed: int = 0,
    n_neighbors: int = 30,
    restarts: int = 3,
    sample_size: int = 5_000,
) -> pd.DataFrame:
    """Silhouettes of a mixture's clusters on a UMAP of the latent, per candidate K.

    Parameters
    ----------
    mean
        Posterior means of q(z|x), shape ``(n_cells, n_latent)``.
    candidates
        The values of K.
    seed
        Seed of the UMAP, the mixtures and the silhouettes' subsample.
    n_neighbors
        ``n_neighbors`` of the 2-D UMAP (``min_dist`` 0, for tight clusters).
    restarts
        ``n_init`` of each GaussianMixture.
    sample_size
        Cells on which the silhouettes are computed (all of them up to this number): a
        silhouette costs the square of the cells.

    Returns
    -------
    One row per K (the index), with ``silhouette_umap``, ``silhouette_latent`` (both of the
    same partition; NaN for K = 1, which has no second cluster to be apart from),
    ``score`` (:func:`worse_view` of the two) and ``chosen`` (``True`` for the highest
    score; a single candidate is chosen whatever its score).
    """
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    embedding = umap_embedding(mean, seed, n_neighbors, n_dims=2)
    sample = slice(None)  # every cell, or a subsample fixed for every K
    if mean.shape[0] > sample_size:
        sample = np.random.default_rng(seed).choice(mean.shape[0], sample_size, replace=False)
    views = {"silhouette_umap": embedding[sample], "silhouette_latent": mean[sample]}
    rows = []
    for k in candidates:
        labels = GaussianMixture(
            k, covariance_type="full", n_init=restarts, reg_covar=1e-4, random_state=seed
        ).fit_predict(embedding)[sample]
        row = {"n_components": int(k), **dict.fromkeys(views, np.nan)}
        if len(np.unique(labels)) > 1:
            row |= {name: float(silhouette_score(x, labels)) for name, x in views.items()}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("n_components")
    table["score"] = worse_view(table["silhouette_umap"], table["silhouette_latent"])
    if table["score"].notna().any():
        best = table["score"].idxmax()
    else:
        best = table.index[0]
    table["chosen"] = table.index == best
    return table


#: train() arguments that set the per-K models' phases, not the selection VAE's training
_PHASE_ARGUMENTS = (
    "max_epochs",
    "pretrain_epochs",
    "anchor_epochs",
    "kl_warmup_epochs",
    "train_size",
    "init",
    "start_kwargs",
    "pretraining",
)


def _compare_n_components(
    cls: type,
    adata: AnnData,
    n_components: Sequence[int],
    train_size: float = 0.9,
    seed: int = 0,
    collapse_threshold: float = 0.01,
    model_kwargs: Mapping | None = None,
    train_kwargs: Mapping | None = None,
    fit_models: bool = True,
    selection_epochs: int | None = None,
) -> pd.DataFrame:
    """Score candidate K without labels; ``chosen`` marks the best separated clusters.

    One VAE is pretrained on all cells; for each K a Gaussian mixture clusters a 2-D
    UMAP of its latent, and the clusters' silhouettes in the UMAP and in the latent are
    each divided by their best over the candidates. The K whose worse view is highest
    is chosen (:func:`~mixvi.model._n_components.separation_scores`). With
    ``fit_models``, every K also gets a GMVAE trained on the same random ``train_size``
    of the cells, whose held-out ELBO and collapsed components are listed. The global
    random state is left as it was.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_components
        The candidate K: distinct integers between 1 and the number of cells.
    train_size
        Fraction of cells the per-K models train on; the rest is held out.
    seed
        Seed of the pretraining, the UMAP and mixtures, the split and the training.
    collapse_threshold
        Weight below which a component counts as collapsed.
    model_kwargs, train_kwargs
        Passed to the constructor and to :meth:`train` (the per-K models).
    fit_models
        Also train one GMVAE per K; ``False`` gives the choice alone, for the cost of
        one pretraining.
    selection_epochs
        Epochs of the VAE pretraining behind the choice; by default
        ``train_kwargs["pretrain_epochs"]``, else a third of scvi-tools' heuristic.

    Returns
    -------
    One row per K: ``silhouette_umap``, ``silhouette_latent``, ``score`` (higher is
    better), ``chosen`` and, with ``fit_models``, ``heldout_elbo`` (per cell),
    ``train_elbo``, ``n_collapsed`` and ``collapsed``.

    Raises
    ------
    ValueError
        Before any training, for an empty candidate list, a K below 1 or above the
        number of cells, or a K given twice.

    Examples
    --------
    >>> table = mixvi.model.GMVAE.compare_n_components(adata, range(2, 16), fit_models=False)
    >>> best_k = int(table.index[table["chosen"]][0])
    """
    from mixvi._settings import isolated_seed

    ks = check_candidates(n_components, adata.n_obs)
    if fit_models and not 0 < train_size < 1:
        raise ValueError(
            f"train_size must be in (0, 1) so that cells are held out, got {train_size}."
        )
    train_kwargs = dict(train_kwargs or {})
    model_kwargs = dict(model_kwargs or {})
    mean = selection_latent(cls, adata, min(ks), seed, model_kwargs, train_kwargs, selection_epochs)
    table = separation_scores(mean, ks, seed=seed)  # seeded by its argument, not globally
    if not fit_models:
        return table
    rows = []
    with isolated_seed(seed):  # the ELBOs' Monte Carlo draws too leave the user's state alone
        for k in ks:
            with isolated_seed(seed):  # the same split and start for every K
                model = cls(adata, n_components=k, **model_kwargs)
                model.train(train_size=train_size, **train_kwargs)
            collapsed = model.collapsed_components(collapse_threshold)
            rows.append(
                {
                    "n_components": k,
                    "heldout_elbo": float(model.get_elbo(indices=model.validation_indices)),
                    "train_elbo": float(model.get_elbo(indices=model.train_indices)),
                    "n_collapsed": len(collapsed),
                    "collapsed": collapsed,
                }
            )
    return table.join(pd.DataFrame(rows).set_index("n_components"))


def selection_latent(
    cls: type,
    adata: AnnData,
    n_components: int,
    seed: int = 0,
    model_kwargs: Mapping | None = None,
    train_kwargs: Mapping | None = None,
    selection_epochs: int | None = None,
) -> np.ndarray:
    """Posterior means of the VAE pretraining that the choice of K reads.

    ``cls`` (the GMVAE) is built with ``n_components`` and ``model_kwargs`` and pretrained
    as a VAE for ``selection_epochs`` (default: ``train_kwargs["pretrain_epochs"]``, else a
    third of scvi-tools' heuristic), with the trainer settings of ``train_kwargs`` but not
    its phases. The global random state is left as it was. Any criterion of K can read
    this latent, as ``benchmarks/k_criteria.py`` does to compare them.
    """
    from scvi.model._utils import get_max_epochs_heuristic

    from mixvi._settings import isolated_seed

    train_kwargs = dict(train_kwargs or {})
    if selection_epochs is None:
        selection_epochs = train_kwargs.get("pretrain_epochs") or max(
            1, get_max_epochs_heuristic(adata.n_obs) // 3
        )
    # the per-K models' trainer settings apply to the selection VAE too, not their phases
    common: dict[str, Any] = {
        key: value for key, value in train_kwargs.items() if key not in _PHASE_ARGUMENTS
    }
    # the criterion was validated on the default network for data other than plain counts
    # (two hidden layers, a 10-D latent); the linear maps that counts get by default chose
    # 7 of 8 simulated types (test_n_components), so the selection VAE keeps that network,
    # and its log1p input, unless the caller names them
    network = {"n_layers": LAYERS, "n_latent": LATENT, "normalize_input": False}
    with isolated_seed(seed):
        selector = cls(adata, n_components=n_components, **{**network, **dict(model_kwargs or {})})
        selector.pretrain(selection_epochs, "vae", **common)
        return selector.get_latent_representation()


class ChooseKMixin:
    """Choosing K for :class:`~mixvi.model.GMVAE`.

    :meth:`compare_n_components` scores the candidates; :meth:`choose_n_components` resizes
    a model built with ``n_components="auto"``.
    """

    def choose_n_components(self, seed: int | None = None, **kwargs) -> int:
        """Choose K among ``k_range`` (``n_components="auto"``) and resize the prior.

        Runs :meth:`compare_n_components` with ``fit_models=False``; the global random
        state is left as it was. :meth:`train` calls this first when K is not chosen yet.

        Parameters
        ----------
        seed
            Seed of the choice (default: ``mixvi.settings.seed``, else 0).
        **kwargs
            Passed to :meth:`compare_n_components` (``selection_epochs``, ``train_kwargs``).

        Returns
        -------
        The chosen K.
        """
        from mixvi._settings import isolated_seed, settings

        from ._n_components import chosen_k

        if self.k_candidates_ is None:
            raise ValueError("n_components was given: there is no K to choose.")
        seed = (settings.seed or 0) if seed is None else seed
        # the network the caller named, not the count defaults resolved from it: the selection
        # VAE keeps the network the criterion was validated with (compare_n_components)
        model_kwargs = {
            key: value
            for key, value in self.init_params_["non_kwargs"].items()
            if key not in ("n_components", "k_range", "n_latent", "n_layers", "normalize_input")
        } | self._network_given
        table = self.compare_n_components(
            self.adata,
            self.k_candidates_,
            seed=seed,
            model_kwargs=model_kwargs,
            fit_models=False,
            **kwargs,
        )
        k = chosen_k(table)
        with isolated_seed(seed):  # the new prior's random means leave the user's stream alone
            self.module.prior = MixturePrior(k, self.module.n_latent, self.module.covariance).to(
                self.device
            )
        self.init_params_["non_kwargs"]["n_components"] = k  # saved, so load does not choose
        self.n_components_choice_, self.k_candidates_ = table, None
        self._warn_small_conditions(k)
        logger.info("n_components='auto': K=%d", k)
        return k

    compare_n_components = classmethod(_compare_n_components)
